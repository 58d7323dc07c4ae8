/**
 * Edges a hostile caller reached over HTTP, two servers on one table as `npm start` runs them: a
 * removed stored limit must not lend its definition to an inline one of its name, shadow limits
 * never delay a caller nor split their scope and are reported on a 429 and a 422 too, and no
 * server answers success from a memory of a lease older than the table.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

let servers: Api[] = [];
const url = (i: number) => (servers[i % servers.length] as Api).url;

beforeAll(async () => {
  const table = tableName('trust');
  // No configuration cache: each change is in force at the next call, on both servers.
  const env = { SLUICE_CONFIG_CACHE_MS: '0', SLUICE_DENIAL_FLUSH_MS: '0' };
  servers = await Promise.all([startApi(table, env), startApi(table, env)]);
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
});

describe('an inline limit named as a removed stored one', () => {
  it('is judged by its own definition: 100 tokens a minute admit 2 calls of 50', async () => {
    const stored = (limit: number) => ({
      limits: [{ name: 'tpm', metric: 'tokens', limit, per: 'minute', resource: 'gpt-4o' }],
    });
    const call = { entity: 'inliner', resource: 'gpt-4o', usage: { tokens: 0 } };
    await put(url(0), 'entities/inliner', stored(1_000_000));
    expect((await acquire(url(0), call)).status).toBe(200);
    await put(url(0), 'entities/inliner', stored(2_000_000)); // edited
    expect((await acquire(url(1), call)).status).toBe(200);
    await put(url(0), 'entities/inliner', { limits: [] }); // removed

    const inline = [{ name: 'tpm', metric: 'tokens', limit: 100, per: 'minute' }];
    const answers = [];
    for (let i = 0; i < 10; i++)
      answers.push(await acquire(url(i), { ...call, usage: { tokens: 50 }, limits: inline }));

    expect(answers.map((a) => a.status)).toEqual([
      200, 200, 429, 429, 429, 429, 429, 429, 429, 429,
    ]);
    // (The bucket refills meanwhile, 100 tokens a minute: never 50 in these few seconds.)
    const [violation] = (answers[9]?.body.violations ?? []) as {
      limit: number;
      remaining: number;
    }[];
    expect(violation).toMatchObject({ name: 'tpm', limit: 100 });
    expect(violation?.remaining).toBeLessThan(50);
  });
});

describe('shadow limits over HTTP', () => {
  const limits = [
    { name: 'tpm', metric: 'tokens', limit: 100, per: 'minute' },
    { name: 'trial', metric: 'tokens', limit: 60, per: 'minute', mode: 'shadow' },
  ];
  const names = (body: Record<string, unknown>) =>
    ((body.shadow_violations ?? []) as { name: string }[]).map((v) => v.name);

  it('never make a caller wait, and are named on a 429 and counted in usage history', async () => {
    const call = { entity: 'shadowed-2', resource: 'm', usage: { tokens: 60 }, limits };
    expect((await acquire(url(0), call)).status).toBe(200); // fills the shadow limit

    const waited = await acquire(url(1), { ...call, usage: { tokens: 30 }, max_wait_ms: 60_000 });
    const refused = await acquire(url(0), { ...call, usage: { tokens: 30 } }); // 60+30+30 > 100

    expect(waited).toMatchObject({ status: 200, body: { wait_ms: 0 } });
    expect(names(waited.body)).toEqual(['trial']);
    expect(refused.status).toBe(429);
    expect(names(refused.body)).toEqual(['trial']);
    await expect
      .poll(
        async () => {
          const usage = await request(
            'GET',
            `${url(0)}/v1/usage?entity=shadowed-2&granularity=hour`,
          );
          return (usage.body.items as { denied: Record<string, number> }[] | undefined)?.[0]
            ?.denied;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toEqual({ tpm: 1, 'shadow:trial': 2 });
  });

  it('are named on a 422 exceeds_capacity when full, and counted in usage history', async () => {
    const daily = [
      { name: 'tpd', metric: 'tokens', limit: 1_000, per: 'day' },
      { name: 'shadow_rpd', metric: 'requests', limit: 1, per: 'day', mode: 'shadow' },
    ];
    const call = (tokens: number) => ({
      entity: 'shadowed-422',
      resource: 'm',
      usage: { tokens },
      limits: daily,
    });
    expect((await acquire(url(0), call(10))).status).toBe(200); // fills shadow_rpd

    const admitted = await acquire(url(0), call(10));
    // tpd could never hold it; the server asked has not seen the entity's item yet.
    const tooLarge = await acquire(url(1), call(5_000));

    expect(admitted.status).toBe(200);
    expect(names(admitted.body)).toEqual(['shadow_rpd']);
    expect(tooLarge).toMatchObject({
      status: 422,
      body: { code: 'exceeds_capacity', violations: [{ name: 'tpd', remaining: 980 }] },
    });
    expect(names(tooLarge.body)).toEqual(['shadow_rpd']);
    await expect
      .poll(
        async () => {
          const usage = await request(
            'GET',
            `${url(1)}/v1/usage?entity=shadowed-422&granularity=hour`,
          );
          return (usage.body.items as { denied: Record<string, number> }[] | undefined)?.[0]
            ?.denied;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toEqual({ tpd: 1, 'shadow:shadow_rpd': 2 });
  });

  it('never split their scope: with one asking for shards, the enforced limits admit as without it', async () => {
    const tpd = { name: 'tpd', metric: 'tokens', limit: 1_000, per: 'day' };
    const observe = {
      name: 'observe',
      metric: 'requests',
      limit: 1_000_000,
      per: 'minute',
      mode: 'shadow',
      shards: 4,
    };
    const call = (entity: string, tokens: number, limits: unknown[]) => ({
      entity,
      resource: 'm',
      usage: { tokens },
      limits,
    });
    const tpdOf = (body: Record<string, unknown>) =>
      (body.limits as { name: string; remaining: number }[]).find((l) => l.name === 'tpd');

    const plain = [
      await acquire(url(0), call('unshadowed', 1, [tpd])),
      await acquire(url(1), call('unshadowed', 500, [tpd])),
    ];
    const shadowed = [
      await acquire(url(0), call('shadow-sharded', 1, [tpd, observe])),
      await acquire(url(1), call('shadow-sharded', 500, [tpd, observe])),
    ];
    const over = await acquire(url(0), call('shadow-sharded', 500, [tpd, observe]));
    const seen = await post(`${url(1)}/v1/available`, call('shadow-sharded', 499, [tpd, observe]));

    // 500 of 1,000 a day admitted either way: the whole limit holds it, not a quarter of it.
    const admitted = (answers: typeof plain) =>
      answers.map((a) => [a.status, tpdOf(a.body)?.remaining]);
    expect(admitted(plain)).toEqual([
      [200, 999],
      [200, 499],
    ]);
    expect(admitted(shadowed)).toEqual(admitted(plain));
    // The next 500 waits for the day to refill (it could never be 422 exceeds_capacity).
    expect(over).toMatchObject({ status: 429, body: { code: 'rate_limited' } });
    expect(seen.body).toMatchObject({
      retry_after_ms: 0,
      limits: [{ name: 'tpd', remaining: 499 }],
    });
  });
});

describe('a 422 exceeds_capacity', () => {
  // One token refills every 259 s: remaining is exact on a real clock.
  const tpm = (extra: Record<string, unknown> = {}) => [
    { name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000, ...extra },
  ];
  const remainingOf = (body: Record<string, unknown>, key: 'limits' | 'violations') =>
    ((body[key] ?? []) as { remaining: number }[]).map((l) => l.remaining);

  it('for a request larger than a shard, from a server that never saw the scope, says what the table holds', async () => {
    const limits = tpm({ shards: 4 }); // 250 a shard
    const ask = (i: number, tokens: number) =>
      acquire(url(i), { entity: 'sharded-422', resource: 'm', usage: { tokens }, limits });
    for (let i = 0; i < 24; i++) expect((await ask(0, 20)).status).toBe(200); // 480 used

    const first = await ask(1, 300);
    const second = await ask(1, 300);
    const table = await post(`${url(0)}/v1/available`, {
      entity: 'sharded-422',
      resource: 'm',
      limits,
    });

    for (const refused of [first, second]) {
      expect(refused).toMatchObject({
        status: 422,
        body: { code: 'exceeds_capacity', retry_after_ms: null },
      });
      expect(remainingOf(refused.body, 'violations')).toEqual(remainingOf(table.body, 'limits'));
    }
    expect(remainingOf(table.body, 'limits')).toEqual([520]);
  });

  it("from a server whose memory of the scope is older than another server's calls, says what the table holds", async () => {
    const limits = tpm();
    const ask = (i: number, tokens: number) =>
      acquire(url(i), { entity: 'stale-422', resource: 'm', usage: { tokens }, limits });
    expect((await ask(1, 1)).status).toBe(200); // server 1 remembers 999 left
    expect((await ask(0, 800)).status).toBe(200); // 199 left in the table

    const refused = await ask(1, 1_500);

    expect(refused.status).toBe(422);
    expect(remainingOf(refused.body, 'violations')).toEqual([199]);
  });
});

describe('a lease settled on another server', () => {
  it('is 409 lease_settled to a repeated adjust on the server that remembers it unsettled', async () => {
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }];
    const acquired = await acquire(url(0), {
      entity: 'remembered',
      resource: 'm',
      usage: { tokens: 500 },
      limits,
    });
    const lease_id = acquired.body.lease_id;
    const adjust = { lease_id, usage: { tokens: 300 } };
    expect((await post(`${url(0)}/v1/adjust`, adjust)).status).toBe(200);
    expect((await post(`${url(1)}/v1/release`, { lease_id, usage: { tokens: 400 } })).status).toBe(
      200,
    );

    const again = await post(`${url(0)}/v1/adjust`, adjust);

    expect(again).toMatchObject({ status: 409, body: { code: 'lease_settled' } });
  });
});
