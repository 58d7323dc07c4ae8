/**
 * A sharded bucket's shares of its burst, whole units each, against DynamoDB Local with several
 * processes (one Limiter each), the clock held still unless moved by hand: at a lower priority,
 * in answers' `remaining`, across splits under leases, and for a lease settled mid-split.
 */
import { Limiter, type ScopeCheck } from '@sluice/core';
import { available, growInBackground, shardKey } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { decide, resourceScope } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shard-shares');

/** An acquire at `priority` as a client makes it: the lease, or undefined when refused. */
const decideAt = async (limiter: Limiter, check: ScopeCheck, priority: number) => {
  const r = await asClient(() =>
    limiter.acquire({ checks: [check], usage: { tokens: 1 }, priority }),
  );
  return r.allowed ? r : undefined;
};

/** What `calls` acquires at `priority`, from two processes, admit with the clock held still. */
async function admittedAt(check: ScopeCheck, priority: number, calls: number) {
  const clock = manualClock();
  const limiters = [table.limiter({ clock: clock.now }), table.limiter({ clock: clock.now })];
  let admitted = (await decideAt(limiters[0] as Limiter, check, priority)) ? 1 : 0;
  await (limiters[0] as Limiter).engine.growth();
  await Promise.all(
    Array.from({ length: 8 }, async (_, c) => {
      for (let i = 0; i < calls / 8; i++)
        if (await decideAt(limiters[c % 2] as Limiter, check, priority)) admitted++;
    }),
  );
  return admitted;
}

describe('a sharded bucket holding whole units of its burst', () => {
  it('a lower priority admits on uneven shards what it does on a whole scope', {
    timeout: 60_000,
  }, async () => {
    // 10 a minute, burst 10. At priority 90 a request may use 90% of the capacity: 9 units of a
    // whole scope. Over 8 shards (2, 2, 1, 1, 1, 1, 1, 1) each shard's 90% is taken of its own
    // whole units: 1.8 → 1 on two shards, 0.9 → 0 on six, which then never admit at 90.
    const limits = (shards: number) => [
      { name: 'rpm', metric: 'requests', limit: 10, per: 'minute', shards },
    ];
    const whole = await admittedAt(resourceScope('priority-whole', limits(1)), 90, 48);
    const sharded = await admittedAt(resourceScope('priority-sharded', limits(8)), 90, 48);
    expect({ whole, sharded }).toEqual({ whole: 9, sharded: 9 });
  });

  it("an answer's remaining is never above the limit when the process saw one shard", {
    timeout: 60_000,
  }, async () => {
    // Images 9 a minute on a scope split 8 ways (by rpm): shard 0 holds 2 of the burst, the
    // others 1. A process that has seen only shard 0 extrapolates its 2 by 1/8: 16.
    const clock = manualClock();
    const check = resourceScope('remaining-one-shard', [
      { name: 'rpm', metric: 'requests', limit: 80, per: 'minute', shards: 8 },
      { name: 'ipm', metric: 'images', limit: 9, per: 'minute' },
    ]);
    const grower = table.limiter({ clock: clock.now });
    expect(await decide(grower, check, 1)).toBeDefined();
    await grower.engine.growth();
    const fresh = table.limiter({ clock: clock.now });
    const answer = await decide(fresh, check, 1);
    const read = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
    const ipm = (limits: readonly { name: string; remaining: number }[] | undefined) =>
      limits?.find((l) => l.name === 'ipm')?.remaining;
    expect({ answered: ipm(answer?.limits), available: ipm(read.limits) }).toEqual({
      answered: 9,
      available: 9,
    });
  });

  it('splits 1→2→4→8 under leases of every size keep every unit, and the whole burst admits at once (generated)', {
    timeout: 400_000,
  }, async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }),
        fc.array(
          fc.record({
            tokens: fc.integer({ min: 1, max: 4 }),
            grow: fc.boolean(),
            release: fc.constantFrom('now', 'late', 'never'),
          }),
          { minLength: 4, maxLength: 24 },
        ),
        async (burst, calls) => {
          run++;
          const clock = manualClock(); // held still: nothing refills
          const check = resourceScope(`gen-burst-${run}`, [
            { name: 'tpm', metric: 'tokens', limit: burst, per: 'minute', max_shards: 8 },
          ]);
          const limiters = [1, 2, 3].map(() => table.limiter({ clock: clock.now }));
          let target = 1;
          let outstanding = 0;
          let most = 0;
          const growths: Promise<unknown>[] = [];
          const late: (() => Promise<unknown>)[] = [];
          for (const [i, call] of calls.entries()) {
            const limiter = limiters[i % 3] as Limiter;
            if (call.grow && target < 8) {
              target *= 2;
              growths.push(growInBackground(limiter.engine, check.key, target));
            }
            const lease = await decide(limiter, check, call.tokens);
            if (!lease) continue;
            outstanding += call.tokens;
            most = Math.max(most, outstanding);
            const other = limiters[(i + 1) % 3] as Limiter;
            const settle = async () => {
              await asClient(() => other.release(lease.leaseId));
              outstanding -= call.tokens;
            };
            if (call.release === 'now') await settle();
            else if (call.release === 'late') late.push(settle);
          }
          await Promise.all(growths);
          await Promise.all(limiters.map((l) => l.engine.growth()));
          await Promise.all(late.map((settle) => settle()));
          await Promise.all(limiters.map((l) => l.engine.idle()));
          // What is left, as a fresh process reads it: the burst less the leases never settled.
          const reader = table.limiter({ clock: clock.now });
          const left = await available(reader.engine, { checks: [check] });
          // Then one unit at a time, as that process (it has seen every shard), until refused.
          let admitted = 0;
          while (admitted <= burst && (await decide(reader, check, 1))) admitted++;
          const items = await Promise.all(
            Array.from({ length: 8 }, (_, s) => table.store.get(shardKey(check.key, s))),
          );
          expect({
            most: most <= burst,
            left: left.limits[0]?.remaining,
            admitted,
            frozen: items.filter((item) => item && (item.n as bigint) < 0n).length,
          }).toEqual({
            most: true,
            left: burst - outstanding,
            admitted: burst - outstanding,
            frozen: 0,
          });
        },
      ),
      { seed: 2_026, numRuns: 12, endOnFailure: true },
    );
  });

  it('a lease settled by a process that saw its shard frozen mid-split gives back every unit', {
    timeout: 60_000,
  }, async () => {
    // 4 a minute, burst 4, may grow to 2 shards. A takes 1 (the scope's item, whole). G splits it
    // and stands still after the freeze; S reads the scope then (it remembers shard 0 frozen, its
    // TAT still at the whole scope's scale). The split completes: shard 0 of 2 keeps the unit.
    // S cancels the lease: it reads the frozen TAT (1 unit at share 1) at share 2 (½ unit), takes
    // that back and drops the other half as dust. With the clock still, 3 of 4 remain.
    const clock = manualClock();
    const check = resourceScope('frozen-memory-refund', [
      { name: 'tpm', metric: 'tokens', limit: 4, per: 'minute', max_shards: 2 },
    ]);
    const a = table.limiter({ clock: clock.now });
    const lease = await decide(a, check, 1);
    expect(lease).toBeDefined();
    const hold = holdPoint();
    const g = new Limiter({
      store: new HookedStore(
        table.store,
        async () => {},
        async () => {},
        async () => hold.arrive(),
      ),
      clock: clock.now,
    });
    const growing = growInBackground(g.engine, check.key, 2);
    await hold.reached;
    const s = table.limiter({ clock: clock.now });
    await available(s.engine, { checks: [check] }); // S remembers shard 0 frozen
    hold.release();
    await growing;
    await asClient(() => s.release(lease?.leaseId as string));
    const left = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
    const reader = table.limiter({ clock: clock.now });
    await available(reader.engine, { checks: [check] });
    let admitted = 0;
    while (admitted <= 4 && (await decide(reader, check, 1))) admitted++;
    expect({ left: left.limits[0]?.remaining, admitted }).toEqual({ left: 4, admitted: 4 });
  });

  it('a lower priority admits on uneven quota shards what it does on a whole scope', {
    timeout: 60_000,
  }, async () => {
    // The quota twin of the bucket case: 10 a day over 8 shards (2, 2, 1, 1, 1, 1, 1, 1); each
    // shard's 90% floored on its own share was 1 + 1 + 0 × 6 = 2.
    const limits = (shards: number) => [
      { name: 'rpd', metric: 'requests', limit: 10, window: 'day', shards },
    ];
    const whole = await admittedAt(resourceScope('quota-priority-whole', limits(1)), 90, 48);
    const sharded = await admittedAt(resourceScope('quota-priority-sharded', limits(8)), 90, 48);
    expect({ whole, sharded }).toEqual({ whole: 9, sharded: 9 });
  });
});
