/**
 * `@sluice/client/in-process` against DynamoDB Local, on the table of a local server started as
 * `npm start` starts it: the in-process client answers as the HTTP client does, shares its leases
 * both ways, settles exactly once, fills usage history through the server's stream reader,
 * honours `callers` by its `principal` option, never over-admits with many clients at once, and
 * makes the caller's timeout the handler's deadline.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  type AcquireResult,
  SluiceClient as HttpClient,
  type SluiceClientOptions,
  SluiceRequestError,
} from '@sluice/client';
import { SluiceClient, type SluiceInProcessOptions } from '@sluice/client/in-process';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { put } from '../support/admin.js';
import { fileApi } from '../support/api.js';

// The handlers' logger is made as they are imported: quiet, as the local server's is.
vi.hoisted(() => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
});

const ACCOUNT = '111122223333';
const TEAM_A = `arn:aws:sts::${ACCOUNT}:assumed-role/ip-team-a/chat`;
const TEAM_B = `arn:aws:sts::${ACCOUNT}:assumed-role/ip-team-b/chat`;
const PRINCIPAL_HEADER = 'x-sluice-principal';
const ACQUIRER = fileURLToPath(new URL('./fixtures/in-process-acquirer.ts', import.meta.url));

// Configuration read afresh by both ways (cache 0), and the principal header trusted so that
// the HTTP client can say who it is, as IAM would in AWS.
const api = fileApi('in-process', {
  SLUICE_CONFIG_CACHE_MS: '0',
  SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: '1',
});

/** A client in this process on the server's table: a new one is a new container's memory. */
const inProcess = (options: Partial<SluiceInProcessOptions> = {}) =>
  new SluiceClient({
    table: api.tableName,
    dynamodbEndpoint: inject('dynamoEndpoint'),
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    configCacheMs: 0,
    ...options,
  });

/** The HTTP client, to the local server, as `principal` when given. */
const overHttp = (principal?: string, options: Partial<SluiceClientOptions> = {}) =>
  new HttpClient({
    endpoint: api.url,
    ...(principal
      ? {
          fetch: (url, init) =>
            fetch(url, {
              ...init,
              headers: {
                ...(init?.headers as Record<string, string>),
                [PRINCIPAL_HEADER]: principal,
              },
            }),
        }
      : {}),
    ...options,
  });

const bucket = (limit: number) => ({ metric: 'tokens', limit, per: 2_592_000 });

beforeAll(async () => {
  await put(api.url, 'resources/ip-large', { price: { input: '10', output: '30' } });
  await put(api.url, 'resources/ip-small', { price: { input: '1', output: '3' } });
  // Each model on its own 1,000 tokens (a 30-day bucket: it refills too slowly to matter).
  await put(api.url, 'plans/ip-plan', {
    allowed_resources: ['ip-large', 'ip-small'],
    limits: [
      { name: 'model_tpm', ...bucket(1_000), resource: 'ip-*' },
      { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000, window: 'month' },
    ],
    fallbacks: { 'ip-large': ['ip-small'] },
  });
  await put(api.url, 'entities/ip-team-a', { callers: [`arn:aws:iam::${ACCOUNT}:role/ip-team-a`] });
});

/** What an answer says, without what differs from one call to the next (ids, times). */
function comparable(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => comparable(v));
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v, k)]));
  if (/lease/i.test(key) && typeof value === 'string') return 'a lease id';
  if (/ms$|reset|retry/i.test(key) && value !== null) return typeof value;
  if (key === 'ratelimit' && typeof value === 'string') return value.replace(/t=\d+/g, 't=N');
  return value;
}

/** Runs a call, giving its refusal (an error) as a value. */
async function outcome<T>(call: () => Promise<T>): Promise<T | Record<string, unknown>> {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof SluiceRequestError)) throw error;
    return { error: error.name, code: error.code, status: error.status, field: error.field };
  }
}

type Client = Pick<HttpClient, 'acquire' | 'adjust' | 'release' | 'available'>;

/** The same requests for entities of `tag`; every answer, in order. */
async function scenario(client: Client, tag: string, asTeamA: Client): Promise<unknown[]> {
  const key = `${tag}-key`;
  await put(api.url, `entities/${key}`, { plan: 'ip-plan' });
  await put(api.url, `entities/${tag}-off`, { plan: 'ip-plan', disabled: true });
  await put(api.url, `entities/${tag}-a`, { plan: 'ip-plan', parent: 'ip-team-a' });
  const ask = { entity: key, resource: 'ip-large', usage: { tokens: 600 } };
  const answers: unknown[] = [];
  const first = await client.acquire(ask); // admitted
  const second = await client.acquire(ask); // ip-large is out: falls back to ip-small
  answers.push(first, second);
  answers.push(await client.acquire(ask)); // both out: 429
  answers.push(await client.acquire({ ...ask, usage: { tokens: 5_000 } })); // never: 422
  answers.push(await outcome(() => client.acquire({ ...ask, resource: 'ip-other' }))); // 403
  answers.push(await outcome(() => client.acquire({ ...ask, entity: `${tag}-off` }))); // 403
  answers.push(await outcome(() => client.acquire({ ...ask, usage: { tokens: -1 } }))); // 400
  answers.push(await outcome(() => client.acquire({ ...ask, entity: `${tag}-a` }))); // callers
  answers.push(await asTeamA.acquire({ ...ask, entity: `${tag}-a`, usage: { tokens: 10 } }));
  answers.push(await client.available({ entity: key, resource: 'ip-large' }));
  const lease = (r: AcquireResult) => (r.allowed ? r.leaseId : '');
  answers.push(await client.adjust(lease(first), { input_tokens: 200, output_tokens: 100 }));
  answers.push(await client.release(lease(first), { input_tokens: 300, output_tokens: 100 }));
  answers.push(await outcome(() => client.release(lease(first), { tokens: 1 }))); // 409
  answers.push(await client.release(lease(second))); // all given back
  answers.push(await outcome(() => client.release('not-a-lease'))); // 400 or 404
  answers.push(await client.available({ entity: key, resource: 'ip-small' }));
  return answers;
}

describe('the in-process client and the HTTP client', () => {
  it('answer the same requests alike: admitted, fallen back, refused, errors, settled', async () => {
    const viaHttp = await scenario(overHttp(), 'ip-h', overHttp(TEAM_A));
    const local = await scenario(inProcess(), 'ip-l', inProcess({ principal: TEAM_A }));
    expect(comparable(local)).toEqual(comparable(viaHttp));
    // What the scenario was meant to go through, so that "alike" is not "alike and empty".
    expect(local.map((a) => (a as { allowed?: boolean }).allowed)).toEqual([
      true,
      true,
      false,
      false,
      ...Array(4).fill(undefined),
      true,
      ...Array(7).fill(undefined),
    ]);
    expect(local[1]).toMatchObject({ resource: 'ip-small', fellBack: true });
    expect(local[2]).toMatchObject({ code: 'rate_limited' });
    expect(local[3]).toMatchObject({ code: 'exceeds_capacity' });
    expect(local.slice(4, 8).map((a) => (a as { code: string }).code)).toEqual([
      'resource_not_allowed',
      'entity_disabled',
      'invalid_request',
      'caller_not_allowed',
    ]);
    expect(local[12]).toMatchObject({ code: 'lease_settled', status: 409 });
    // ip-large: 1,000 - 400 settled; ip-small: all of its 600 given back.
    const tpm = (remaining: number) =>
      expect.arrayContaining([expect.objectContaining({ name: 'model_tpm', remaining })]);
    expect(local[11]).toMatchObject({ settled: true, limits: tpm(600) });
    expect(local[15]).toMatchObject({ limits: tpm(1_000) });
  });

  it('share leases: acquired in process, settled over HTTP, and the reverse', async () => {
    await put(api.url, 'entities/ip-shared', { plan: 'ip-plan' });
    const ask = { entity: 'ip-shared', resource: 'ip-large', usage: { tokens: 300 } };
    const local = inProcess();
    const http = overHttp();
    const a = await local.acquire(ask);
    const b = await http.acquire(ask);
    if (!a.allowed || !b.allowed) throw new Error('not admitted');
    expect(await http.release(a.leaseId, { tokens: 100 })).toMatchObject({ settled: true });
    expect(await local.release(b.leaseId, { tokens: 50 })).toMatchObject({ settled: true });
    // Each settled once, whichever way asks again.
    await expect(local.release(a.leaseId, { tokens: 1 })).rejects.toMatchObject({
      code: 'lease_settled',
    });
    await expect(http.release(b.leaseId, { tokens: 1 })).rejects.toMatchObject({
      code: 'lease_settled',
    });
    const left = await http.available({ entity: 'ip-shared', resource: 'ip-large' });
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(1_000 - 150);
  });
});

describe('settlement', () => {
  it('applies a lease once among duplicated, concurrent releases from both ways', async () => {
    await put(api.url, 'entities/ip-once', { plan: 'ip-plan' });
    const ask = { entity: 'ip-once', resource: 'ip-large', usage: { tokens: 500 } };
    const lease = await inProcess().acquire(ask);
    if (!lease.allowed) throw new Error('not admitted');
    const clients: Client[] = [inProcess(), inProcess(), inProcess(), overHttp(), overHttp()];
    const release = (i: number, tokens: number) =>
      (clients[i % clients.length] as Client).release(lease.leaseId, { tokens });
    // The same release, sent many times at once (a retry, a duplicate): each says it is settled.
    const repeated = await Promise.all(Array.from({ length: 20 }, (_, i) => release(i, 100)));
    for (const answer of repeated)
      expect(answer).toMatchObject({ settled: true, usage: { tokens: 100 } });
    // A different one after it is refused, either way.
    for (const i of [0, 3])
      await expect(release(i, 50)).rejects.toMatchObject({ code: 'lease_settled' });
    const left = await overHttp().available({ entity: 'ip-once', resource: 'ip-large' });
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(900);
  });

  it('lets one of many different concurrent releases win, the others refused', async () => {
    await put(api.url, 'entities/ip-race-settle', { plan: 'ip-plan' });
    const ask = { entity: 'ip-race-settle', resource: 'ip-large', usage: { tokens: 500 } };
    const lease = await overHttp().acquire(ask);
    if (!lease.allowed) throw new Error('not admitted');
    const clients: Client[] = [inProcess(), inProcess(), overHttp()];
    const answers = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        (clients[i % clients.length] as Client).release(lease.leaseId, { tokens: 10 + i }),
      ),
    );
    const won = answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    const refused = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason] : []));
    expect(won).toHaveLength(1);
    for (const r of refused) expect(r).toMatchObject({ code: 'lease_settled' });
    const charged = won[0]?.usage.tokens ?? Number.NaN;
    const left = await overHttp().available({ entity: 'ip-race-settle', resource: 'ip-large' });
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(1_000 - charged);
  });
});

describe('usage history', () => {
  it('counts what the in-process client settled and refused, read either way', async () => {
    await put(api.url, 'entities/ip-history', { plan: 'ip-plan' });
    const local = inProcess({ denialFlushMs: 0 });
    // ip-small: no fallback, so that a refusal is one.
    const ask = { entity: 'ip-history', resource: 'ip-small', usage: { tokens: 400 } };
    for (let i = 0; i < 3; i++) {
      const lease = await local.acquire(ask);
      if (!lease.allowed) throw new Error('not admitted');
      await local.release(lease.leaseId, { input_tokens: 200, output_tokens: 100 });
    }
    expect(await local.acquire(ask)).toMatchObject({
      allowed: false,
    });
    // The next acquire finds the refusal due and writes it (as a function's next call does).
    await local.acquire({ ...ask, usage: { tokens: 1 } });
    const query = { entity: 'ip-history', granularity: 'day' as const, resource: 'ip-small' };
    await vi.waitFor(
      async () => {
        const history = await overHttp().usage(query);
        expect(history.items[0]).toMatchObject({
          leases: 4,
          usage: { input_tokens: 600, output_tokens: 300 },
          denied: { model_tpm: 1 },
        });
      },
      { timeout: 20_000, interval: 250 },
    );
    expect((await local.usage(query)).items).toEqual((await overHttp().usage(query)).items);
  });
});

describe('callers', () => {
  it('refuses a client without a principal the entity names, on every route; one with it works', async () => {
    await put(api.url, 'entities/ip-team-a-key', { plan: 'ip-plan', parent: 'ip-team-a' });
    const ask = { entity: 'ip-team-a-key', resource: 'ip-large', usage: { tokens: 100 } };
    const allowed = inProcess({ principal: TEAM_A });
    const lease = await allowed.acquire(ask);
    if (!lease.allowed) throw new Error('not admitted');
    for (const client of [inProcess(), inProcess({ principal: TEAM_B })]) {
      const calls = [
        () => client.acquire(ask),
        () => client.available(ask),
        () => client.adjust(lease.leaseId, { tokens: 1 }),
        () => client.release(lease.leaseId, { tokens: 1 }),
        () => client.usage({ entity: ask.entity }),
      ];
      for (const call of calls)
        await expect(call()).rejects.toMatchObject({ code: 'caller_not_allowed', status: 403 });
    }
    expect(await allowed.release(lease.leaseId, { tokens: 40 })).toMatchObject({ settled: true });
    const left = await allowed.available(ask);
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(960);
  });
});

describe('many in-process clients in one process at once', () => {
  it('never admit past the limit', async () => {
    await put(api.url, 'entities/ip-race', { plan: 'ip-plan' });
    const clients = Array.from({ length: 8 }, () => inProcess());
    const ask = { entity: 'ip-race', resource: 'ip-small', usage: { tokens: 70 } };
    const answers = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        (clients[i % clients.length] as SluiceClient).acquire(ask),
      ),
    );
    const admitted = answers.filter((a) => a.allowed).length;
    // 1,000 tokens hold 14 calls of 70: never more, and contention refuses none of those.
    expect(admitted).toBe(14);
    const left = await overHttp().available({ entity: 'ip-race', resource: 'ip-small' });
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(1_000 - 14 * 70);
  });
});

/** Processes of their own, each with clients of its own, told to go at once. */
async function racingProcesses(count: number, env: Record<string, string>): Promise<number[]> {
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, ['--conditions=sluice-source', '--import', 'tsx', ACQUIRER], {
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  const lines = children.map((child) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    return (pattern: RegExp) =>
      vi.waitFor(() => pattern.exec(out)?.[1] ?? expect.fail(out), {
        timeout: 30_000,
        interval: 50,
      });
  });
  await Promise.all(lines.map((line) => line(/(ready)/)));
  for (const child of children) child.stdin.write('go\n');
  return Promise.all(lines.map(async (line) => Number(await line(/admitted (\d+)/))));
}

describe('many in-process clients in many processes at once', () => {
  it('never admit past the limit', async () => {
    await put(api.url, 'entities/ip-race-processes', { plan: 'ip-plan' });
    const admitted = await racingProcesses(3, {
      TABLE: api.tableName,
      DYNAMODB_ENDPOINT: inject('dynamoEndpoint'),
      ENTITY: 'ip-race-processes',
      RESOURCE: 'ip-small',
      TOKENS: '70',
      CLIENTS: '3',
      CALLS: '20',
    });
    const total = admitted.reduce((a, b) => a + b, 0);
    expect(total).toBe(14);
    const left = await overHttp().available({ entity: 'ip-race-processes', resource: 'ip-small' });
    expect(left.limits.find((l) => l.name === 'model_tpm')?.remaining).toBe(1_000 - 14 * 70);
  });
});

describe("the caller's timeout", () => {
  let stalled: Server;
  let endpoint: string;
  beforeAll(async () => {
    // A DynamoDB that accepts connections and never answers.
    stalled = createServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    const address = stalled.address();
    endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  const sockets = new Set<Socket>();
  afterAll(() => {
    for (const socket of sockets) socket.destroy();
    stalled?.close();
  });

  it("is the handler's deadline: Sluice answers 503 before it, and the client says so", async () => {
    const client = inProcess({
      dynamodbEndpoint: endpoint,
      timeoutMs: 400,
      retries: 0,
      onUnavailable: 'deny',
    });
    const started = Date.now();
    const answer = await client.acquire({
      entity: 'ip-stalled',
      resource: 'ip-large',
      usage: { tokens: 1 },
    });
    // Sluice's own 503 (with its retry_after_ms), not the client giving up on a silent handler.
    expect(answer).toMatchObject({ allowed: false, code: 'unavailable', retryAfterMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(400);
  });
});
