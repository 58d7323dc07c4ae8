import { ScanCommand } from '@aws-sdk/client-dynamodb';
import {
  itemKeys,
  type Limit,
  Limiter,
  parseLimits,
  type ScopeCheck,
  ValidationError,
} from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { check, rpm, tpm } from '../support/limits.js';
import { countedLimiter, fileTable, freshTable, manualClock } from '../support/table.js';

const table = fileTable('engine');

describe('acquire', () => {
  it('checks every limit of an item at once and consumes nothing when one refuses', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([rpm(100), tpm(1_000)]);
    expect((await limiter.acquire({ checks: [c], usage: { tokens: 900 } })).allowed).toBe(true);

    const denied = await limiter.acquire({ checks: [c], usage: { tokens: 200 } });

    expect(denied).toMatchObject({ allowed: false, code: 'rate_limited' });
    expect(denied.allowed ? [] : denied.violations.map((v) => v.name)).toEqual(['tpm']);
    const after = await limiter.available({ checks: [c] });
    expect(after.limits.map((l) => [l.name, l.remaining])).toEqual([
      ['rpm', 99],
      ['tpm', 100],
    ]);
  });

  it('says when a refused request will fit', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(600)]); // 10 tokens a second
    await limiter.acquire({ checks: [c], usage: { tokens: 600 } });

    const denied = await limiter.acquire({ checks: [c], usage: { tokens: 50 } });

    expect(denied).toMatchObject({ allowed: false, retryAfterMs: 5_000 });
  });

  it('admits again once the bucket has refilled', async () => {
    const { limiter, clock } = countedLimiter(table);
    const c = check([tpm(600)]);
    await limiter.acquire({ checks: [c], usage: { tokens: 600 } });
    clock.advance(5_000);

    const result = await limiter.acquire({ checks: [c], usage: { tokens: 50 } });

    expect(result.allowed).toBe(true);
  });

  it('charges sub-millisecond costs exactly at a million tokens a minute', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(1_000_000)]); // one token = 60 µs
    for (let i = 0; i < 300; i++) {
      expect((await limiter.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(true);
    }

    const status = await limiter.available({ checks: [c] });

    expect(status.limits[0]?.remaining).toBe(999_700);
  });

  it('refuses a request larger than the burst as exceeds_capacity, writing nothing', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check([tpm(1_000, 1_500)]);

    const result = await limiter.acquire({ checks: [c], usage: { tokens: 1_501 } });

    expect(result).toMatchObject({ allowed: false, code: 'exceeds_capacity', retryAfterMs: null });
    expect(store.writes).toBe(0);
  });

  it('denies from memory when the last state seen proves the request cannot fit', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check([tpm(1_000)]);
    await limiter.acquire({ checks: [c], usage: { tokens: 1_000 } });
    const writesBefore = store.writes;

    const denied = await limiter.acquire({ checks: [c], usage: { tokens: 10 } });

    expect(denied.allowed).toBe(false);
    expect(store.writes).toBe(writesBefore);
  });

  it('remembers at most cacheSize items, the most recently written ones', async () => {
    const store = new CountingStore(table.store);
    const limiter = new Limiter({ store, clock: manualClock().now, cacheSize: 32 });
    const full = Array.from({ length: 100 }, () => check([tpm(1_000)]));
    for (const c of full) await limiter.acquire({ checks: [c], usage: { tokens: 1_000 } });
    const writesBefore = store.writes;

    // The newest 30 are still known empty: refused without a write.
    for (const c of full.slice(-30)) {
      expect((await limiter.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(false);
    }
    expect(store.writes).toBe(writesBefore);
    // The oldest were forgotten: refusing them takes a write each.
    for (const c of full.slice(0, 30)) {
      expect((await limiter.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(false);
    }
    expect(store.writes).toBe(writesBefore + 30);
  });

  it('still asks DynamoDB about a smaller request the last state seen cannot rule out', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check([tpm(1_000)]);
    await limiter.acquire({ checks: [c], usage: { tokens: 990 } });
    await limiter.acquire({ checks: [c], usage: { tokens: 50 } }); // denied from memory
    const writesBefore = store.writes;

    const small = await limiter.acquire({ checks: [c], usage: { tokens: 10 } });

    expect(small.allowed).toBe(true);
    expect(store.writes).toBe(writesBefore + 1);
  });

  it('never lets a stale memory admit: another process filled the bucket', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check([tpm(1_000)]);
    await a.acquire({ checks: [c], usage: { tokens: 10 } }); // a remembers an almost empty bucket
    await b.acquire({ checks: [c], usage: { tokens: 990 } });

    const result = await a.acquire({ checks: [c], usage: { tokens: 10 } });

    expect(result.allowed).toBe(false);
  });

  it('reserves a place instead of refusing when the caller may wait, in arrival order', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(600)]); // 10 tokens a second
    await limiter.acquire({ checks: [c], usage: { tokens: 600 } });

    const first = await limiter.acquire({ checks: [c], usage: { tokens: 100 }, maxWaitMs: 30_000 });
    const second = await limiter.acquire({
      checks: [c],
      usage: { tokens: 100 },
      maxWaitMs: 30_000,
    });
    const tooLong = await limiter.acquire({
      checks: [c],
      usage: { tokens: 100 },
      maxWaitMs: 25_000,
    });

    expect(first).toMatchObject({ allowed: true, waitMs: 10_000 });
    expect(second).toMatchObject({ allowed: true, waitMs: 20_000 });
    expect(tooLong).toMatchObject({ allowed: false, retryAfterMs: 30_000 });
  });

  it('keeps the last part of the burst for higher priorities', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([rpm(10)]);
    for (let i = 0; i < 8; i++) await limiter.acquire({ checks: [c], usage: {}, priority: 80 });

    const low = await limiter.acquire({ checks: [c], usage: {}, priority: 80 });
    const high = await limiter.acquire({ checks: [c], usage: {} });

    expect(low.allowed).toBe(false);
    expect(high.allowed).toBe(true);
  });

  it('refuses bad usage and bad options before writing anything', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check([tpm(1_000)]);

    const attempts = [
      () => limiter.acquire({ checks: [c], usage: { tokens: -5 } }),
      () => limiter.acquire({ checks: [c], usage: { tokens: 1.5 } }),
      () => limiter.acquire({ checks: [c], usage: {}, priority: 0 }),
      () => limiter.acquire({ checks: [c], usage: {}, maxWaitMs: -1 }),
      () => limiter.acquire({ checks: [], usage: {} }),
    ];

    for (const attempt of attempts) await expect(attempt()).rejects.toBeInstanceOf(ValidationError);
    expect(store.writes).toBe(0);
  });

  it('keeps bucket state when the limit changes', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(1_000)]);
    await limiter.acquire({ checks: [c], usage: { tokens: 700 } });
    const doubled: Limit[] = parseLimits([tpm(2_000)]);

    const result = await limiter.acquire({
      checks: [{ ...c, limits: doubled }],
      usage: { tokens: 300 },
    });

    expect(result.allowed && result.limits[0]?.remaining).toBe(1_000); // 2,000 − 700 − 300
  });
});

describe('several scopes in one decision', () => {
  it('refunds the scopes that admitted when another refuses', async () => {
    const { limiter } = countedLimiter(table);
    const key = check([tpm(10_000)]);
    const project = check([tpm(1_000)], 'parent:project-1');
    await limiter.acquire({ checks: [project], usage: { tokens: 900 } });

    const denied = await limiter.acquire({ checks: [key, project], usage: { tokens: 200 } });

    expect(denied.allowed ? [] : denied.violations.map((v) => v.scope)).toEqual([
      'parent:project-1',
    ]);
    const after = await limiter.available({ checks: [key, project] });
    expect(after.limits.map((l) => l.remaining)).toEqual([10_000, 100]);
  });

  it('reports every scope on admission', async () => {
    const { limiter } = countedLimiter(table);
    const key = check([tpm(10_000)]);
    const shared: ScopeCheck = {
      scope: 'resource',
      key: itemKeys.resourceBucket('model-reports-every-scope'),
      limits: parseLimits([tpm(50_000)]),
    };

    const result = await limiter.acquire({ checks: [key, shared], usage: { tokens: 100 } });

    expect(result.allowed && result.limits.map((l) => [l.scope, l.remaining])).toEqual([
      ['entity', 9_900],
      ['resource', 49_900],
    ]);
  });
});

describe('calendar quotas', () => {
  const daily = (timezone: string, limit = 3) => ({
    name: 'daily',
    metric: 'requests',
    limit,
    window: 'day',
    timezone,
  });

  it('refuses past the quota until local midnight, then starts afresh (Tokyo, east of UTC)', async () => {
    const { limiter, clock } = countedLimiter(table, Date.parse('2026-01-15T14:30:00Z')); // 23:30 in Tokyo
    const c = check([daily('Asia/Tokyo')]);
    for (let i = 0; i < 3; i++) await limiter.acquire({ checks: [c], usage: {} });

    const denied = await limiter.acquire({ checks: [c], usage: {} });
    clock.set(Date.parse('2026-01-15T15:00:00Z')); // midnight in Tokyo
    const nextDay = await limiter.acquire({ checks: [c], usage: {} });

    expect(denied).toMatchObject({ allowed: false, retryAfterMs: 30 * 60_000 });
    expect(nextDay.allowed && nextDay.limits[0]?.remaining).toBe(2);
  });

  it('rolls over at local midnight across the spring-forward day (New York)', async () => {
    const { limiter, clock } = countedLimiter(table, Date.parse('2026-03-08T03:30:00Z')); // Mar 7, 22:30 EST
    const c = check([daily('America/New_York', 1)]);
    await limiter.acquire({ checks: [c], usage: {} });
    clock.set(Date.parse('2026-03-08T05:00:00Z')); // Mar 8, 00:00 EST
    const sunday = await limiter.acquire({ checks: [c], usage: {} });
    clock.set(Date.parse('2026-03-09T03:59:59Z')); // Mar 8, 23:59:59 EDT: still Sunday
    const lateSunday = await limiter.acquire({ checks: [c], usage: {} });
    clock.set(Date.parse('2026-03-09T04:00:00Z')); // Mar 9, 00:00 EDT

    const monday = await limiter.acquire({ checks: [c], usage: {} });

    expect([sunday.allowed, lateSunday.allowed, monday.allowed]).toEqual([true, false, true]);
  });

  it('counts a monthly budget and refuses what would cross it', async () => {
    const { limiter } = countedLimiter(table, Date.parse('2026-02-10T00:00:00Z'));
    const c = check([
      { name: 'monthly', metric: 'cost_micro_usd', limit: 1_000_000, window: 'month' },
    ]);
    await limiter.acquire({ checks: [c], usage: { cost_micro_usd: 999_000 } });

    const over = await limiter.acquire({ checks: [c], usage: { cost_micro_usd: 1_001 } });
    const fits = await limiter.acquire({ checks: [c], usage: { cost_micro_usd: 1_000 } });

    expect(over).toMatchObject({
      allowed: false,
      retryAfterMs: Date.parse('2026-03-01T00:00:00Z') - Date.parse('2026-02-10T00:00:00Z'),
    });
    expect(fits.allowed).toBe(true);
  });

  it('joins the window of a process whose clock is already past midnight', async () => {
    const ahead = manualClock(Date.parse('2026-06-02T00:00:01Z'));
    const behind = manualClock(Date.parse('2026-06-01T23:59:59Z'));
    const a = new Limiter({ store: table.store, clock: ahead.now });
    const b = new Limiter({ store: table.store, clock: behind.now });
    const c = check([daily('UTC', 2)]);
    await a.acquire({ checks: [c], usage: {} });

    await b.acquire({ checks: [c], usage: {} });
    const third = await a.acquire({ checks: [c], usage: {} });

    expect(third.allowed).toBe(false); // b counted in June 2, not in a reset June 1
  });
});

describe('available', () => {
  it('consumes nothing and says when usage would fit', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(600)]);
    await limiter.acquire({ checks: [c], usage: { tokens: 580 } });

    const first = await limiter.available({ checks: [c], usage: { tokens: 40 } });
    const second = await limiter.available({ checks: [c], usage: { tokens: 40 } });

    expect(first).toEqual(second);
    expect(first.retryAfterMs).toBe(2_000);
    expect(first.limits[0]?.remaining).toBe(20);
  });
});

describe('bad input', () => {
  it('writes nothing at all for refused limits or usage', async () => {
    const fresh = await freshTable('engine-bad');
    const limiter = fresh.limiter();
    const countItems = async () =>
      (await fresh.client.send(new ScanCommand({ TableName: fresh.tableName, Select: 'COUNT' })))
        .Count;

    expect(() => parseLimits([{ ...tpm(10), limit: -3 }])).toThrow(ValidationError);
    await expect(
      limiter.acquire({ checks: [check([tpm(10)])], usage: { tokens: Number.NaN } }),
    ).rejects.toBeInstanceOf(ValidationError);

    expect(await countItems()).toBe(0);
  });
});
