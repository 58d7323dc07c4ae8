/**
 * Sharded scopes at their edges, against DynamoDB Local with several processes (one Limiter
 * each), faults only at the store's edge (HookedStore): a shard whose TTL ran out while a split
 * stood still, refusals while shards this process saw hold room, and generated runs of splits
 * and resets under cancelled leases.
 */
import { ConfigAdmin, itemKeys, Limiter, parseLimits, type ScopeCheck } from '@sluice/core';
import type { ItemUpdate } from '@sluice/core/internal';
import { available, growInBackground, shardKey } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { decide, resourceScope } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shard-edges');

const DAY_MS = 86_400_000;

describe('a sharded scope at its edges', () => {
  it('a scope whose shard 0 expired mid-split (splitter gone) neither over-admits nor sticks', async () => {
    // A cold scope configured with 2 shards: its first call creates shard 0 whole (with a TTL)
    // and starts the split in the background. The splitter stops after creating the new half
    // (a Lambda container frozen after its answer, then reclaimed; a server killed): shard 0
    // stays frozen with its TTL, shard 1 frozen, born, with no TTL. Nobody calls for two days:
    // DynamoDB's TTL deletes shard 0 (its ttl has passed). Then a new process calls again.
    const clock = manualClock();
    const check = resourceScope('expired-mid-split', [
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
    // 10 a minute over 4 shards: 3, 3, 2 and 2 requests of the burst (2.5 each, fractions no
    // shard could admit, left 8 before), all 10 admitted with the clock held still.
    const clock = manualClock();
    const check = resourceScope('uneven-burst', [
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
    const untouched = resourceScope('uneven-burst-untouched', [
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

  it('is full again once every lease is cancelled, whatever splits and resets ran between (generated)', {
    timeout: 240_000,
  }, async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            tokens: fc.integer({ min: 1, max: 120 }),
            event: fc.constantFrom('none', 'none', 'none', 'none', 'reset', 'grow'),
            late: fc.boolean(),
          }),
          { minLength: 10, maxLength: 40 },
        ),
        async (calls) => {
          run++;
          const clock = manualClock(); // held still: nothing refills
          const entity = `gen-${run}`;
          const check: ScopeCheck = {
            scope: 'entity',
            key: itemKeys.entityBucket(entity, 'gpt-4o'),
            limits: parseLimits([
              { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 1_000 },
              { name: 'daily', metric: 'tokens', limit: 3_000, window: 'day', max_shards: 8 },
            ]),
          };
          const limiters = [1, 2, 3].map(() => table.limiter({ clock: clock.now }));
          const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
          let target = 1;
          const events: Promise<unknown>[] = [];
          const late: (() => Promise<unknown>)[] = [];
          await Promise.all(
            calls.map(async (call, i) => {
              const limiter = limiters[i % 3] as Limiter;
              if (call.event === 'reset') events.push(admin.reset(entity, 'review'));
              if (call.event === 'grow' && target < 8) {
                target *= 2;
                events.push(growInBackground(limiter.engine, check.key, target));
              }
              const lease = await decide(limiter, check, call.tokens);
              if (!lease) return;
              const other = limiters[(i + 1) % 3] as Limiter;
              const settle = () => asClient(() => other.release(lease.leaseId));
              if (call.late) late.push(settle);
              else await settle();
            }),
          );
          await Promise.all(events);
          // Every lease cancelled: what a lease took before a reset was emptied by it, what it
          // took since is given back.
          await Promise.all(late.map((settle) => settle()));
          await Promise.all(limiters.map((l) => l.engine.growth()));
          await Promise.all(limiters.map((l) => l.engine.idle()));
          const left = await available(table.limiter({ clock: clock.now }).engine, {
            checks: [check],
          });
          const byName = Object.fromEntries(left.limits.map((l) => [l.name, l.remaining]));
          expect(byName).toEqual({ tpm: 1_000, daily: 3_000 });
          const items = await Promise.all(
            Array.from({ length: 9 }, (_, s) => table.store.get(shardKey(check.key, s))),
          );
          expect(items.filter((item) => item && (item.n as bigint) < 0n)).toEqual([]);
        },
      ),
      { seed: 4_242, numRuns: 8, endOnFailure: true },
    );
  });

  it('refuses only when the limit is nearly used up, not while a third of it is left', {
    timeout: 60_000,
  }, async () => {
    // The docs: "A call picks a shard at random; if that shard refuses, it tries one more before
    // refusing, so a 429 means the limit is (nearly) used up, not that one shard is." One
    // process, calls one after another, the clock held still: the first refusals come while
    // ~a third of the limit is left, and this process's memory knew of the shards with room.
    const clock = manualClock();
    const check = resourceScope('first-refusal', [
      { name: 'rpm', metric: 'requests', limit: 640, per: 'minute', shards: 64 },
    ]);
    const limiter = table.limiter({ clock: clock.now });
    expect(await decide(limiter, check, 1)).toBeDefined();
    await limiter.engine.growth();
    let admitted = 1;
    let leftAtFirstRefusal: number | undefined;
    while (leftAtFirstRefusal === undefined && admitted < 640) {
      if (await decide(limiter, check, 1)) admitted++;
      else {
        const left = await available(table.limiter({ clock: clock.now }).engine, {
          checks: [check],
        });
        leftAtFirstRefusal = left.limits[0]?.remaining;
      }
    }
    // "Nearly": at most a tenth of the limit left when the first 429 is answered.
    expect({ admitted, leftAtFirstRefusal: leftAtFirstRefusal ?? 0 }).toEqual({
      admitted: expect.any(Number),
      leftAtFirstRefusal: expect.toSatisfy((left: number) => left <= 64),
    });
  });
});
