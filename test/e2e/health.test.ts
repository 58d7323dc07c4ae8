/**
 * GET /v1/health as `npm start` serves it, while the server's stream reader reads DynamoDB Local
 * through a proxy that can make every GetRecords fail as DynamoDB Streams does (a
 * TrimmedDataAccessException on the wire): usage history `failing` while it does, `ok` with a
 * lag once it stops, everything settled meanwhile counted, and `{"status":"ok"}` throughout.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

const WAIT = { timeout: 30_000, interval: 100 };

/** DynamoDB Local behind a proxy whose GetRecords fails while `failing`. */
interface StreamsFault {
  readonly url: string;
  failing: boolean;
  close(): Promise<void>;
}

async function startFaultProxy(upstream: string): Promise<StreamsFault> {
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const target = String(req.headers['x-amz-target'] ?? '');
    if (fault.failing && target.endsWith('.GetRecords')) {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(
        JSON.stringify({
          __type: 'com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException',
          message: 'the data the iterator points at was trimmed',
        }),
      );
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string' && name !== 'host' && name !== 'content-length')
        headers[name] = value;
    const answer = await fetch(upstream, {
      method: 'POST',
      headers,
      body: Buffer.concat(chunks),
    });
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/x-amz-json-1.0',
    });
    res.end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const fault: StreamsFault = {
    url: `http://127.0.0.1:${port}`,
    failing: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return fault;
}

let fault: StreamsFault;
let api: Api;
beforeAll(async () => {
  fault = await startFaultProxy(inject('dynamoEndpoint'));
  // The handlers read the table directly; the usage aggregator reads the stream through the proxy.
  api = await startApi(tableName('health-e2e'), { SLUICE_AGGREGATOR_ENDPOINT: fault.url });
});
afterAll(async () => {
  await api?.stop();
  await fault?.close();
});

const health = () => request('GET', `${api.url}/v1/health`);
const usageHistory = async () => (await health()).body.usage_history;

let settled = 0;
async function settle(tokens: number): Promise<void> {
  const lease = await post(`${api.url}/v1/acquire`, {
    entity: 'key-health',
    resource: 'gpt-4o',
    usage: { tokens: 1_000 },
    limits: [{ name: 'tpd', metric: 'tokens', limit: 1_000_000, per: 'day' }],
  });
  expect(lease.status).toBe(200);
  const release = await post(`${api.url}/v1/release`, {
    lease_id: lease.body.lease_id,
    usage: { tokens },
  });
  expect(release.status).toBe(200);
  settled += tokens;
}

async function countedTokens(): Promise<number> {
  const answer = await request('GET', `${api.url}/v1/usage?entity=key-health&granularity=day`);
  const items = answer.body.items as { usage: Record<string, number> }[];
  return items.reduce((sum, item) => sum + (item.usage.tokens ?? 0), 0);
}

describe('GET /v1/health', () => {
  it('says usage history is failing while the stream cannot be read, and ok once it can', async () => {
    await settle(120);
    await expect.poll(usageHistory, WAIT).toMatchObject({ status: 'ok', failing_since: null });
    await expect.poll(countedTokens, WAIT).toBe(settled);

    fault.failing = true;
    await settle(80);
    await expect
      .poll(usageHistory, WAIT)
      .toMatchObject({ status: 'failing', error: 'TrimmedDataAccessException' });
    const failing = await health();
    fault.failing = false;

    await expect
      .poll(usageHistory, WAIT)
      .toMatchObject({ status: 'ok', failing_since: null, error: null });
    const recovered = await health();
    expect(failing.status).toBe(200);
    expect(failing.body).toMatchObject({
      status: 'ok',
      usage_history: { failing_since: expect.any(String) },
    });
    expect(JSON.stringify(failing.body)).not.toMatch(/127\.0\.0\.1|arn:|trimmed|stack/);
    expect(recovered.status).toBe(200);
    expect(recovered.body).toMatchObject({
      status: 'ok',
      usage_history: { lag_ms: expect.any(Number), counted_at: expect.any(String) },
    });
    await expect.poll(countedTokens, WAIT).toBe(settled);
  });
});
