/**
 * The SDK's default transport (Node's HTTP client) on real sockets, against small servers that
 * misbehave as networks and proxies do: one that never answers, one that cuts an answer short,
 * one that checks the request's SigV4 signature from what it received.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SluiceAdmin, SluiceClient } from '@sluice/client';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, describe, expect, it } from 'vitest';

interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

const servers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((close) => close()));
});

/** A server on 127.0.0.1 that hands each request (read whole) to `answer`. */
async function serve(answer: (seen: Seen, res: ServerResponse, n: number) => void) {
  const seen: Seen[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const one = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
      seen.push(one);
      answer(one, res, seen.length);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, connections: () => connections };
}

const json = (res: ServerResponse, status: number, body: unknown, headers = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
};

const ADMITTED = { lease_id: 'L1', wait_ms: 0, limits: [] };
const request = { entity: 'k', resource: 'm', usage: { tokens: 10 } };

describe("the SDK over Node's HTTP client", () => {
  it('sends exactly what it signed: the server recomputes the SigV4 signature and it matches', async () => {
    const server = await serve((_, res) => json(res, 200, ADMITTED));
    const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-real-secret' };
    const sluice = new SluiceClient({ endpoint: server.url, region: 'eu-west-1', credentials });

    const result = await sluice.acquire(request);

    expect(result).toMatchObject({ allowed: true, leaseId: 'L1', degraded: false });
    const [got] = server.seen;
    if (!got) throw new Error('nothing reached the server');
    const authorization = String(got.headers.authorization);
    const signedNames = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
    expect(signedNames).toContain('host');
    const amzDate = String(got.headers['x-amz-date']);
    const signingDate = new Date(
      `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13)}`,
    );
    const url = new URL(got.path, server.url);
    const again = await new SignatureV4({
      service: 'execute-api',
      region: 'eu-west-1',
      credentials,
      sha256: Sha256,
    }).sign(
      {
        method: got.method,
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: url.pathname,
        headers: Object.fromEntries(signedNames.map((n) => [n, String(got.headers[n])])),
        body: got.body,
      },
      { signingDate },
    );
    expect(again.headers.authorization).toBe(authorization);
    expect(JSON.parse(got.body)).toEqual(request);
  });

  it('keeps one connection open across calls', async () => {
    const server = await serve((_, res) => json(res, 200, ADMITTED));
    const sluice = new SluiceClient({ endpoint: server.url });

    for (let i = 0; i < 5; i++) await sluice.acquire(request);

    expect(server.seen).toHaveLength(5);
    expect(server.connections()).toBe(1);
  });

  it("never lets a finished call's deadline cut a later call on the same connection", async () => {
    const server = await serve((_, res, n) => {
      if (n === 1) json(res, 200, ADMITTED);
      else setTimeout(() => json(res, 200, { ...ADMITTED, lease_id: 'L2' }), 500);
    });
    const quick = new SluiceClient({ endpoint: server.url, timeoutMs: 150, retries: 0 });
    const patient = new SluiceClient({ endpoint: server.url, timeoutMs: 5_000, retries: 0 });

    expect(await quick.acquire(request)).toMatchObject({ leaseId: 'L1', degraded: false });
    const second = await patient.acquire(request); // on the same connection, past 150 ms

    expect(second).toMatchObject({ allowed: true, leaseId: 'L2', degraded: false });
    expect(server.connections()).toBe(1);
  });

  it('passes on the rate-limit headers of a refusal', async () => {
    const server = await serve((_, res) =>
      json(
        res,
        429,
        { code: 'rate_limited', retry_after_ms: 1_500, violations: [], limits: [] },
        { 'retry-after': '2', 'x-ratelimit-remaining-tokens': '0', 'x-request-id': 'r1' },
      ),
    );
    const sluice = new SluiceClient({ endpoint: server.url });

    const result = await sluice.acquire(request);

    expect(result).toMatchObject({ allowed: false, degraded: false });
    expect(!result.allowed && result.headers).toEqual({
      'retry-after': '2',
      'x-ratelimit-remaining-tokens': '0',
    });
  });

  it('gives up on a server that never answers by its deadline, having tried again', async () => {
    const server = await serve(() => {}); // reads the request, never answers
    const sluice = new SluiceClient({
      endpoint: server.url,
      timeoutMs: 600,
      retries: 2,
      onUnavailable: 'deny',
    });

    const started = Date.now();
    const result = await sluice.acquire(request);

    expect(result).toMatchObject({ allowed: false, code: 'unavailable', degraded: true });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(server.seen.length).toBeGreaterThanOrEqual(1);
  });

  it('takes an answer cut short for a network error, and tries again', async () => {
    const server = await serve((_, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 500 });
        res.write('{"lease_id":"cut');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      json(res, 200, ADMITTED);
    });
    const sluice = new SluiceClient({ endpoint: server.url, sleep: async () => {} });

    const result = await sluice.acquire(request);

    expect(result).toMatchObject({ allowed: true, leaseId: 'L1', degraded: false });
    expect(server.seen).toHaveLength(2);
  });

  it('gives up on an answer that stalls halfway, by its deadline', async () => {
    const server = await serve((_, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 500 });
      res.write('{"lease_id":"stalled'); // and nothing more
    });
    const sluice = new SluiceClient({ endpoint: server.url, timeoutMs: 600, retries: 1 });

    const started = Date.now();
    const result = await sluice.acquire(request);

    expect(result).toMatchObject({ allowed: true, degraded: true });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("gives the admin a proxy's page that is not JSON as a readable error", async () => {
    const server = await serve((_, res) => {
      res.writeHead(403, { 'content-type': 'text/html' });
      res.end('<html>Forbidden by a proxy</html>');
    });
    const admin = new SluiceAdmin({ endpoint: server.url });

    await expect(admin.get('plan', 'free')).rejects.toMatchObject({
      code: 'forbidden',
      status: 403,
      message: '<html>Forbidden by a proxy</html>',
    });
  });
});
