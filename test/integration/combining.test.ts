/**
 * Write combining, in a process that serves many calls at once (a `Limiter`, `npm start`):
 * concurrent acquires on one item reach DynamoDB together, and admit exactly what they would have
 * admitted one after another.
 */
import {
  bucketAttributes,
  itemKeys,
  Limiter,
  parseLimits,
  type ScopeCheck,
  StoreUnavailableError,
} from '@sluice/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { freshTable, manualClock, type TestTable } from '../support/table.js';

let table: TestTable;
let n = 0;
beforeAll(async () => {
  table = await freshTable('combining');
});

/** One unit of a per-minute limit, in the bucket's units: a minute in ns. */
const P = 60_000_000_000n;
const NS_PER_MS = 1_000_000n;

function check(limit: { name: string; metric: string; limit: number; burst?: number }): ScopeCheck {
  n++;
  return {
    scope: 'entity',
    key: itemKeys.entityBucket(`combining-${n}`, 'gpt-4o'),
    limits: parseLimits([{ ...limit, per: 'minute' }]),
  };
}

/** The real store, counting the writes that reach each item. */
function countingStore(fail?: (itemWrites: number, id: string) => Error | undefined) {
  const writes = new Map<string, number>();
  const store = new HookedStore(table.store, async (update) => {
    const id = `${update.key.pk} ${update.key.sk}`;
    const count = writes.get(id) ?? 0;
    writes.set(id, count + 1);
    const error = fail?.(count, id);
    if (error) throw error;
  });
  return { store, writesTo: (c: ScopeCheck) => writes.get(`${c.key.pk} ${c.key.sk}`) ?? 0 };
}

/** The stored TAT × L of one limit (0 when absent). */
async function tat(c: ScopeCheck): Promise<bigint> {
  const name = c.limits[0]?.name ?? '';
  const x = (await table.store.get(c.key))?.[bucketAttributes.tat(name)];
  return typeof x === 'bigint' ? x : 0n;
}

const nowX = (ms: number, limit: number) => BigInt(ms) * NS_PER_MS * BigInt(limit);

describe('concurrent acquires on one item', () => {
  it('go to DynamoDB in two writes and admit exactly the burst', async () => {
    const clock = manualClock();
    const { store, writesTo } = countingStore();
    const limiter = new Limiter({ store, clock: clock.now });
    const c = check({ name: 'rpm', metric: 'requests', limit: 10 });

    const results = await Promise.all(
      Array.from({ length: 40 }, () => limiter.acquire({ checks: [c], usage: {} })),
    );

    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    // The first call alone; the nine that fit behind it together; the rest refused from the
    // state that write returned.
    expect(writesTo(c)).toBe(2);
    expect(await tat(c)).toBe(nowX(clock.now(), 10) + 10n * P);
    for (const r of results) {
      if (r.allowed) expect(r.waitMs).toBe(0);
      else expect(r.violations.map((v) => [v.name, v.retryAfterMs])).toEqual([['rpm', 6_000]]);
    }

    // Without a combiner (a Lambda container serves one call at a time), the same burst sends
    // a write per call, most of them bound to fail.
    const alone = countingStore();
    const plain = new Limiter({ store: alone.store, clock: clock.now, combiner: undefined });
    const d = check({ name: 'rpm', metric: 'requests', limit: 10 });
    await Promise.all(Array.from({ length: 40 }, () => plain.acquire({ checks: [d], usage: {} })));
    expect(alone.writesTo(d)).toBeGreaterThanOrEqual(40);
  });

  it('charge a combined write the sum of its calls, and settle each lease on its own', async () => {
    const clock = manualClock();
    const limiter = new Limiter({ store: table.store, clock: clock.now });
    const c = check({ name: 'tpm', metric: 'tokens', limit: 10_000 });
    const sizes = Array.from({ length: 30 }, (_, i) => ((i * 137) % 900) + 100); // 15,600 in all

    const results = await Promise.all(
      sizes.map((tokens) => limiter.acquire({ checks: [c], usage: { tokens } })),
    );

    const admitted = sizes.filter((_, i) => results[i]?.allowed);
    const taken = admitted.reduce((a, b) => a + b, 0);
    expect(taken).toBeLessThanOrEqual(10_000);
    expect(await tat(c)).toBe(nowX(clock.now(), 10_000) + BigInt(taken) * P);
    results.forEach((r, i) => {
      if (r.allowed) {
        expect(r.waitMs).toBe(0);
        expect(r.limits[0]?.remaining).toBeGreaterThanOrEqual(0);
      } else {
        // Every refusal is true: the call did not fit even once everything else was admitted.
        expect(r.violations.map((v) => v.name)).toEqual(['tpm']);
        expect(sizes[i]).toBeGreaterThan(10_000 - taken);
      }
    });

    // Each lease gives back what its own call did not use: the bucket ends holding what was used.
    const used = await Promise.all(
      results.map(async (r, i) => {
        if (!r.allowed) return 0;
        const actual = Math.floor((sizes[i] ?? 0) / 3);
        expect((await limiter.release(r.leaseId, { tokens: actual })).settled).toBe(true);
        return actual;
      }),
    );
    const total = used.reduce((a, b) => a + b, 0);
    expect(await tat(c)).toBe(nowX(clock.now(), 10_000) + BigInt(total) * P);
  });

  it('are combined only with calls of the same limits and priority', async () => {
    const clock = manualClock();
    const limiter = new Limiter({ store: table.store, clock: clock.now });
    const c = check({ name: 'rpm', metric: 'requests', limit: 20 });

    // Two full-priority calls first (the second forms a group behind the first), then
    // half-priority ones, which may fill only half the burst, 10 units. Were they combined with
    // the full-priority group, they would be planned at its priority and fill up to 18.
    const priorities = [100, 100, ...Array.from({ length: 30 }, () => 50)];
    const results = await Promise.all(
      priorities.map((priority) => limiter.acquire({ checks: [c], usage: {}, priority })),
    );

    const admittedAt = (p: number) =>
      results.filter((r, i) => r.allowed && priorities[i] === p).length;
    expect(admittedAt(100)).toBe(2);
    // Exactly how many depends on the order DynamoDB Local serves the writes sent at once.
    expect(admittedAt(50)).toBeGreaterThanOrEqual(8);
    expect(admittedAt(50)).toBeLessThanOrEqual(10);
    expect(await tat(c)).toBe(nowX(clock.now(), 20) + BigInt(2 + admittedAt(50)) * P);
  });

  it('fail together when their combined write fails, and give back their other scopes', async () => {
    const clock = manualClock();
    const org = check({ name: 'rpm', metric: 'requests', limit: 100 });
    const orgId = `${org.key.pk} ${org.key.sk}`;
    // The organisation's second write is the combined one: DynamoDB throttles it.
    const { store } = countingStore((count, id) =>
      id === orgId && count === 1
        ? new StoreUnavailableError('throttled', { notApplied: true })
        : undefined,
    );
    const limiter = new Limiter({ store, clock: clock.now });
    const keys = Array.from({ length: 12 }, () =>
      check({ name: 'rpm', metric: 'requests', limit: 100 }),
    );

    const settled = await Promise.allSettled(
      keys.map((key) => limiter.acquire({ checks: [key, org], usage: {} })),
    );

    expect(settled[0]).toMatchObject({ status: 'fulfilled', value: { allowed: true } });
    for (const s of settled.slice(1)) {
      expect(s.status).toBe('rejected');
      expect(s.status === 'rejected' ? s.reason : undefined).toBeInstanceOf(StoreUnavailableError);
    }
    // Only the first call is charged anywhere: the others' keys were given back.
    expect(await tat(org)).toBe(nowX(clock.now(), 100) + P);
    expect(await tat(keys[0] as ScopeCheck)).toBe(nowX(clock.now(), 100) + P);
    for (const key of keys.slice(1)) expect(await tat(key)).toBe(nowX(clock.now(), 100));
  });

  it('from two processes admit exactly the burst between them', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check({ name: 'rpm', metric: 'requests', limit: 20 });

    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).acquire({ checks: [c], usage: {} })),
    );

    expect(results.filter((r) => r.allowed)).toHaveLength(20);
    for (const r of results)
      if (!r.allowed) expect(r.violations.map((v) => v.name)).toEqual(['rpm']);
    expect(await tat(c)).toBe(nowX(clock.now(), 20) + 20n * P);
  });
});
