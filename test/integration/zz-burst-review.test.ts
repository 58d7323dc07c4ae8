/**
 * Review of whole-unit shard bursts (038fb34), against DynamoDB Local with several processes
 * (one Limiter each), the clock held still unless moved by hand.
 */
import type { Limiter, ScopeCheck } from '@sluice/core';
import { available } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { decide, resourceScope } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('burst-review');

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

describe('whole-unit shard bursts under review', () => {
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
});
