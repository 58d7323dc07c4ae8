/**
 * A hostile review of sharded scopes (review-shards): each test here failed on the code it was
 * written against. DynamoDB Local, real processes' memories (one Limiter each), faults injected
 * only at the store's edge (HookedStore).
 */
import { itemKeys, Limiter, parseLimits, type ScopeCheck } from '@sluice/core';
import type { ItemUpdate } from '@sluice/core/internal';
import { available, shardKey } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('zz-shards-review');

const scope = (resource: string, limits: unknown): ScopeCheck => ({
  scope: 'resource',
  key: itemKeys.resourceBucket(resource),
  limits: parseLimits(limits),
});

const decide = async (limiter: Limiter, check: ScopeCheck, tokens: number) => {
  const r = await asClient(() => limiter.acquire({ checks: [check], usage: { tokens } }));
  return r.allowed ? r : undefined;
};

const DAY_MS = 86_400_000;

describe('sharded scopes under review', () => {
  it('a scope whose shard 0 expired mid-split (splitter gone) neither over-admits nor sticks', async () => {
    // A cold scope configured with 2 shards: its first call creates shard 0 whole (with a TTL)
    // and starts the split in the background. The splitter stops after creating the new half
    // (a Lambda container frozen after its answer, then reclaimed; a server killed): shard 0
    // stays frozen with its TTL, shard 1 frozen, born, with no TTL. Nobody calls for two days:
    // DynamoDB's TTL deletes shard 0 (its ttl has passed). Then a new process calls again.
    const clock = manualClock();
    const check = scope('expired-mid-split', [
      { name: 'rpm', metric: 'requests', limit: 10, per: 'minute', shards: 2 },
    ]);
    const parentThaw = (u: ItemUpdate) =>
      u.key.sk === check.key.sk && (u.remove ?? []).includes('nf');
    const dying = new Limiter({
      store: new HookedStore(table.store, async (u) => {
        if (parentThaw(u)) throw new Error('the splitter stopped here');
      }),
      clock: clock.now,
    });
    expect(await decide(dying, check, 1)).toBeDefined();
    await dying.engine.growth();
    const [zero, one] = await Promise.all(
      [0, 1].map((s) => table.store.get(shardKey(check.key, s))),
    );
    expect(zero?.n).toBe(-2n);
    expect(one?.n).toBe(-2n);
    expect(one?.ttl).toBeUndefined();

    // Two days later: an item whose TTL has passed is deleted by DynamoDB (done here by hand:
    // DynamoDB Local's own TTL runs on wall time).
    clock.advance(2 * DAY_MS);
    for (const [s, item] of [zero, one].entries()) {
      const ttl = item?.ttl;
      if (typeof ttl === 'bigint' && Number(ttl) * 1_000 < clock.now())
        await table.store.transact([{ key: shardKey(check.key, s), delete: true }]);
    }

    // The clock held still: at most the limit's burst (10) is admitted, over any processes.
    const fresh = [table.limiter({ clock: clock.now }), table.limiter({ clock: clock.now })];
    let admitted = 0;
    await Promise.all(
      Array.from({ length: 6 }, async (_, c) => {
        for (let i = 0; i < 5; i++) if (await decide(fresh[c % 2] as Limiter, check, 1)) admitted++;
      }),
    );
    await Promise.all(fresh.map((l) => l.engine.growth()));
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    const after = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
    // A minute later every unit has refilled: the scope is whole again.
    clock.advance(60_000);
    const later = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
    expect({
      admitted,
      shards: items.map((i) => i?.n),
      remaining: after.limits[0]?.remaining,
      aMinuteLater: later.limits[0]?.remaining,
    }).toEqual({ admitted: 10, shards: [2n, 2n], remaining: 0, aMinuteLater: 10 });
  });

  it('admits exactly the burst with the clock held still when the burst does not divide by the shards', async () => {
    // 10 a minute over 4 shards: each holds 2.5 requests of the burst. The docs: "each shard
    // holds 1/N of the rate and of the burst — exactly, the shards add up to the limit".
    const clock = manualClock();
    const check = scope('uneven-burst', [
      { name: 'rpm', metric: 'requests', limit: 10, per: 'minute', shards: 4 },
    ]);
    const limiters = [table.limiter({ clock: clock.now }), table.limiter({ clock: clock.now })];
    expect(await decide(limiters[0] as Limiter, check, 1)).toBeDefined();
    await (limiters[0] as Limiter).engine.growth();
    let admitted = 1;
    await Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; i < 5; i++)
          if (await decide(limiters[c % 2] as Limiter, check, 1)) admitted++;
      }),
    );
    const fresh = table.limiter({ clock: clock.now });
    const untouched = scope('uneven-burst-untouched', [
      { name: 'rpm', metric: 'requests', limit: 10, per: 'minute', shards: 4 },
    ]);
    expect(await decide(fresh, untouched, 1)).toBeDefined();
    await fresh.engine.growth();
    const left = await available(table.limiter({ clock: clock.now }).engine, {
      checks: [untouched],
    });
    expect({ admitted, remainingAfterOne: left.limits[0]?.remaining }).toEqual({
      admitted: 10,
      remainingAfterOne: 9,
    });
  });
});
