/**
 * The store's reads of one turn sent together, under the engine: cold limiters, many concurrent
 * calls, sharded scopes read whole, settlements of many leases at once.
 */
import { itemKeys, type Limiter, parseLimits, type ScopeCheck } from '@sluice/core';
import { expect, it } from 'vitest';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('reads-engine');

const entity = (name: string, limit: number): ScopeCheck => ({
  scope: 'entity',
  key: itemKeys.entityBucket(name, 'gpt-4o'),
  limits: parseLimits([{ name: 'rpm', metric: 'requests', limit, per: 'minute' }]),
});
const resource = (name: string, limit: number, shards: number): ScopeCheck => ({
  scope: 'resource',
  key: itemKeys.resourceBucket(name),
  limits: parseLimits([{ name: 'rpm', metric: 'requests', limit, per: 'minute', shards }]),
});

it('answers 250 concurrent acquires on a cold limiter exactly, then settles them all', async () => {
  const clock = manualClock();
  const limiter = table.limiter({ clock: clock.now });
  const shared = entity('hot', 100);
  const checks = Array.from({ length: 250 }, (_, i) => [entity(`e-${i}`, 3), shared]);
  const results = await Promise.all(
    checks.map((c) => limiter.acquire({ checks: c, usage: { requests: 1 } })),
  );
  expect(results.filter((r) => r.allowed)).toHaveLength(100);

  // A cold process reads what they left, every scope in one turn.
  const cold = table.limiter({ clock: clock.now });
  const seen = await Promise.all(
    checks.map((c) => cold.available({ checks: c, usage: { requests: 1 } })),
  );
  const admitted = new Set(results.flatMap((r, i) => (r.allowed ? [i] : [])));
  seen.forEach((s, i) => {
    const own = s.limits.find((l) => l.scope === 'entity' && l.remaining !== undefined);
    expect(s.limits.length).toBeGreaterThan(0);
    void own;
    const mine = s.limits[0];
    expect({ i, remaining: mine?.remaining }).toEqual({ i, remaining: admitted.has(i) ? 2 : 3 });
  });

  // Every lease released at once by yet another cold process (settle reads what it needs).
  const settler = table.limiter({ clock: clock.now });
  const settled = await Promise.all(
    results.flatMap((r) => (r.allowed ? [settler.release(r.leaseId, { requests: 1 })] : [])),
  );
  expect(settled).toHaveLength(100);
  const after = await table.limiter({ clock: clock.now }).available({
    checks: [shared],
    usage: { requests: 1 },
  });
  expect(after.limits[0]?.remaining).toBe(0);
}, 60_000);

it('reads two 64-shard scopes (more than 100 items) in one available, exactly', async () => {
  const clock = manualClock();
  const a = resource('wide-a', 640, 64);
  const b = resource('wide-b', 640, 64);
  const limiters = Array.from({ length: 4 }, () => table.limiter({ clock: clock.now }));
  await limiters[0]?.acquire({ checks: [a, b], usage: { requests: 1 } });
  await limiters[0]?.engine.growth();
  let admitted = 1;
  await Promise.all(
    Array.from({ length: 64 }, async (_, c) => {
      for (let i = 0; i < 4; i++) {
        const r = await (limiters[c % 4] as Limiter).acquire({
          checks: [a, b],
          usage: { requests: 1 },
        });
        if (r.allowed) admitted++;
      }
    }),
  );
  for (const l of limiters) await l.engine.growth();
  const cold = table.limiter({ clock: clock.now });
  const left = await cold.available({ checks: [a, b], usage: { requests: 1 } });
  expect(left.limits.map((l) => l.remaining)).toEqual([640 - admitted, 640 - admitted]);
}, 60_000);
