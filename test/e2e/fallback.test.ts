/**
 * Falling back to a smaller model, over HTTP on the local server: a refused resource falls back
 * in the same call, the estimate is repriced for the fallback, and the fallback is what settles.
 */
import { SluiceClient } from '@sluice/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acquire, acquireAsClient, limitOf, put } from '../support/admin.js';
import { type Api, request, startApi, tableName } from '../support/api.js';
import { type IamProxy, keysRead, roundsOf, startRecorder } from '../support/iam-proxy.js';

// Two servers on one table, as two Lambda containers are; a third whose DynamoDB requests are
// recorded (behind a proxy that allows everything).
const table = tableName('fallback');
let servers: Api[] = [];
let recorder: IamProxy;
let recorded: Api;
beforeAll(async () => {
  recorder = await startRecorder(inject('dynamoEndpoint'));
  [servers, recorded] = await Promise.all([
    Promise.all([startApi(table), startApi(table)]),
    startApi(table, { DYNAMODB_ENDPOINT: recorder.url }),
  ]);
});
afterAll(async () => {
  await Promise.all([...servers, recorded].map((server) => server?.stop()));
  await recorder?.close();
});
const api = {
  get url() {
    return (servers[0] as Api).url;
  },
};
const other = {
  get url() {
    return (servers[1] as Api).url;
  },
};
let n = 0;

// A 30-day bucket (it refills too slowly to matter here) and a monthly budget in micro-USD.
const limits = [
  { name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 },
  { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000, window: 'month' as const },
];

async function resources() {
  await put(api.url, 'resources/fb-large', { price: { input: '10', output: '30' } });
  await put(api.url, 'resources/fb-small', { price: { input: '1', output: '3' } });
  await put(api.url, 'resources/fb-tiny', { price: { input: '0.1', output: '0.3' } });
}

const remaining = async (entity: string, resource: string, name: string) => {
  const res = await request('POST', `${api.url}/v1/available`, { entity, resource, limits });
  return limitOf(res.body, 'entity', name)?.remaining;
};

describe('fallback in the request', () => {
  it('takes the first fallback that admits, reprices the estimate, and settles there', async () => {
    await resources();
    const entity = `fb-key-${++n}`;
    const ask = { entity, resource: 'fb-large', usage: { input_tokens: 800 }, limits };
    const first = await acquire(api.url, { ...ask, fallback: ['fb-small'] });
    const second = await acquire(api.url, { ...ask, fallback: ['fb-small', 'fb-tiny'] });
    const released = await request('POST', `${api.url}/v1/release`, {
      lease_id: second.body.lease_id,
      usage: { input_tokens: 300, output_tokens: 100 },
    });

    expect(first.body).toMatchObject({ allowed: true, resource: 'fb-large', fell_back: false });
    // 800 of fb-large's 1,000 tokens are taken: the second call falls back to fb-small.
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ allowed: true, resource: 'fb-small', fell_back: true });
    // The estimate at fb-small's price: 800 × $1 per million = 800 micro-USD, not 8,000.
    expect(limitOf(second.body, 'entity', 'usd')?.remaining).toBe(1_000_000 - 800);
    // Settled on fb-small: 300 × 1 + 100 × 3 = 600 micro-USD, 400 tokens; fb-large untouched.
    expect(released.body.usage).toMatchObject({ cost_micro_usd: 600, tokens: 400 });
    expect(await remaining(entity, 'fb-small', 'tpm')).toBe(1_000 - 400);
    expect(await remaining(entity, 'fb-small', 'usd')).toBe(1_000_000 - 600);
    expect(await remaining(entity, 'fb-large', 'tpm')).toBe(1_000 - 800);
  });

  it('answers 429 only when no resource admits, naming each resource in the violations', async () => {
    await resources();
    const entity = `fb-key-${++n}`;
    const ask = { entity, usage: { input_tokens: 800 }, limits };
    for (const resource of ['fb-large', 'fb-small']) await acquire(api.url, { ...ask, resource });
    const refused = await acquire(api.url, {
      ...ask,
      resource: 'fb-large',
      fallback: ['fb-small'],
    });

    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe('rate_limited');
    const violations = refused.body.violations as { resource: string; name: string }[];
    expect(violations.map((v) => `${v.resource}:${v.name}`)).toEqual([
      'fb-large:tpm',
      'fb-small:tpm',
    ]);
    expect(await remaining(entity, 'fb-large', 'tpm')).toBe(200);
    expect(await remaining(entity, 'fb-small', 'tpm')).toBe(200);
  });

  it('over-admits neither resource under 40 concurrent callers on two servers', async () => {
    await resources();
    const entity = `fb-key-${++n}`;
    const ask = { entity, resource: 'fb-large', usage: { input_tokens: 300 }, limits };
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        acquireAsClient(i % 2 ? api.url : other.url, { ...ask, fallback: ['fb-small'] }),
      ),
    );
    const on = (resource: string) =>
      answers.filter((a) => a.status === 200 && a.body.resource === resource).length;

    // 1,000 tokens each: at most three calls of 300 fit on each resource, every other call is
    // refused, and each bucket holds exactly what was admitted on it.
    expect(on('fb-large')).toBeLessThanOrEqual(3);
    expect(on('fb-small')).toBeLessThanOrEqual(3);
    expect(on('fb-small')).toBeGreaterThan(0); // fb-large ran out: later callers fell back
    expect(answers.filter((a) => a.status === 429)).toHaveLength(
      40 - on('fb-large') - on('fb-small'),
    );
    expect(await remaining(entity, 'fb-large', 'tpm')).toBe(1_000 - 300 * on('fb-large'));
    expect(await remaining(entity, 'fb-small', 'tpm')).toBe(1_000 - 300 * on('fb-small'));
  });

  it('keeps answers without fallbacks as they were: no resource, no fell_back', async () => {
    await resources();
    const res = await acquire(api.url, {
      entity: `fb-key-${++n}`,
      resource: 'fb-large',
      usage: { input_tokens: 1 },
      limits,
    });
    expect(res.status).toBe(200);
    expect(res.body).not.toHaveProperty('resource');
    expect(res.body).not.toHaveProperty('fell_back');
  });

  it('refuses a fallback list naming the requested resource, or one resource twice', async () => {
    const ask = { entity: 'fb-bad', resource: 'fb-large', usage: { input_tokens: 1 }, limits };
    const self = await acquire(api.url, { ...ask, fallback: ['fb-large'] });
    const twice = await acquire(api.url, { ...ask, fallback: ['fb-small', 'fb-small'] });
    expect(self).toMatchObject({ status: 400, body: { field: 'fallback[0]' } });
    expect(twice).toMatchObject({ status: 400, body: { field: 'fallback[1]' } });
  });
});

describe('what a fallback costs', () => {
  /** Bucket writes the recorded server sends while `call` runs. */
  const writesDuring = async (call: () => Promise<unknown>) => {
    const bucketWrites = () =>
      recorder.allowed.filter(
        (a) => a.action === 'dynamodb:UpdateItem' && a.pk?.startsWith('entity#'),
      ).length;
    const before = bucketWrites();
    await call();
    return bucketWrites() - before;
  };

  it('is one write per resource tried, and none for one this process knows is refusing', async () => {
    await resources();
    const entity = `fb-key-${++n}`;
    const ask = { entity, resource: 'fb-large', usage: { input_tokens: 800 }, limits };
    let fell: Awaited<ReturnType<typeof acquire>> | undefined;

    // 800 of fb-large's 1,000 tokens, taken through the recorded server: it now knows the bucket.
    expect(await writesDuring(() => acquire(recorded.url, ask))).toBe(1);
    const knownAt = Date.now();
    // fb-large is refused from memory: only fb-small is written. (Memory refuses for a second:
    // on a machine so loaded that the call starts late, fb-large may cost its own write.)
    const startedAfterMs = Date.now() - knownAt;
    const writes = await writesDuring(async () => {
      fell = await acquire(recorded.url, { ...ask, fallback: ['fb-small'] });
    });
    if (startedAfterMs < 500) expect(writes).toBe(1);
    else expect(writes).toBeLessThanOrEqual(2);
    expect(fell?.body).toMatchObject({ allowed: true, resource: 'fb-small', fell_back: true });
  });

  it('is one write per resource tried when the process has not seen the refusing one', async () => {
    await resources();
    const entity = `fb-key-${++n}`;
    const ask = { entity, resource: 'fb-large', usage: { input_tokens: 800 }, limits };
    await acquire(api.url, ask); // another server takes fb-large's capacity
    let fell: Awaited<ReturnType<typeof acquire>> | undefined;

    // fb-large: one write, refused by its condition (the answer tells the state); fb-small: one.
    expect(
      await writesDuring(async () => {
        fell = await acquire(recorded.url, { ...ask, fallback: ['fb-small'] });
      }),
    ).toBe(2);
    expect(fell?.body).toMatchObject({ allowed: true, resource: 'fb-small', fell_back: true });
  });

  it("looking up the plan's fallbacks adds no round trip to a cold configuration cache", async () => {
    // Entity, plan and resource never read by the recorded server: all three are cache misses.
    const plan = `fb-cold-plan-${++n}`;
    const resource = `fb-cold-model-${n}`;
    const entity = `fb-cold-${n}`;
    await put(api.url, `resources/${resource}`, { price: { input: '1', output: '3' } });
    await put(api.url, `plans/${plan}`, { limits });
    await put(api.url, `entities/${entity}`, { plan });
    const from = recorder.exchanges.length;

    // Every answer 50 ms late, as a regional DynamoDB's are a few ms: reads sent together
    // overlap, and each round shows.
    recorder.delayMs = 50;
    const res = await acquire(recorded.url, {
      entity,
      resource,
      usage: { input_tokens: 10 },
    }).finally(() => {
      recorder.delayMs = 0;
    });

    expect(res.status).toBe(200);
    // The entity and the resource go together (in one request), the plan (named by the entity)
    // after: two rounds, not three.
    const reads = recorder.exchanges
      .slice(from)
      .filter((e) => keysRead(e).some((k) => k.pk.startsWith('config#')));
    const read = reads.flatMap(keysRead).map((k) => `${k.pk} ${k.sk}`);
    expect(read).toEqual(
      expect.arrayContaining([`config#entity ${entity}`, `config#resource ${resource}`]),
    );
    expect(read).toContain(`config#plan ${plan}`); // and settings, unless already cached
    expect(reads).toHaveLength(2);
    expect(roundsOf(reads)).toBe(2);
  });
});

describe("a plan's fallbacks", () => {
  it('fall back from a resource the plan does not allow, in one call', async () => {
    await resources();
    await put(api.url, 'plans/fb-starter', {
      allowed_resources: ['fb-small', 'fb-tiny'],
      fallbacks: { 'fb-large': ['fb-small'] },
      limits,
    });
    const entity = `fb-starter-${++n}`;
    await put(api.url, `entities/${entity}`, { plan: 'fb-starter' });

    const res = await acquire(api.url, {
      entity,
      resource: 'fb-large',
      usage: { input_tokens: 100 },
    });
    const direct = await acquire(api.url, {
      entity,
      resource: 'fb-tiny',
      usage: { input_tokens: 1 },
    });

    expect(res.body).toMatchObject({ allowed: true, resource: 'fb-small', fell_back: true });
    expect(direct.status).toBe(200);
  });

  it('are refused when they go round in a cycle or name a resource the plan does not allow', async () => {
    const cycle = await request('PUT', `${api.url}/v1/admin/plans/fb-cycle`, {
      fallbacks: { 'fb-large': ['fb-small'], 'fb-small': ['fb-tiny'], 'fb-tiny': ['fb-large'] },
    });
    const outside = await request('PUT', `${api.url}/v1/admin/plans/fb-outside`, {
      allowed_resources: ['fb-small'],
      fallbacks: { 'fb-small': ['fb-large'] },
    });
    const stored = await request('GET', `${api.url}/v1/admin/plans/fb-cycle`);

    expect(cycle.status).toBe(400);
    expect(cycle.body.field).toBe('fallbacks.fb-large');
    expect(String(cycle.body.detail)).toContain('fb-large → fb-small → fb-tiny → fb-large');
    expect(outside).toMatchObject({ status: 400, body: { field: 'fallbacks.fb-small[0]' } });
    expect(stored.status).toBe(404);
  });
});

describe('the SDK', () => {
  it('says which model to call: acquire and withLease name the fallback taken', async () => {
    await resources();
    const sluice = new SluiceClient({ endpoint: api.url });
    const entity = `fb-sdk-${++n}`;
    const ask = { entity, resource: 'fb-large', usage: { input_tokens: 800 }, limits };
    await sluice.acquire(ask); // fb-large now holds 800 of 1,000

    const called: string[] = [];
    const result = await sluice.withLease({ ...ask, fallback: ['fb-small'] }, async (lease) => {
      called.push(lease.resource); // the model the caller sends the request to
      return { value: 'ok', usage: { input_tokens: 500 } };
    });
    const refused = await sluice.acquire({ ...ask, fallback: ['fb-small'] });

    expect(called).toEqual(['fb-small']);
    expect(result).toMatchObject({ allowed: true, value: 'ok' });
    expect(refused).toMatchObject({ allowed: false, code: 'rate_limited' });
    if (!refused.allowed)
      expect(refused.violations.map((v) => v.resource)).toEqual(['fb-large', 'fb-small']);
  });
});
