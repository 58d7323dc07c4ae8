/**
 * Sharded scopes on DynamoDB Local: a shared limit split over several items, grown while callers
 * are admitted, adjusted and released, by several processes at once. The model is the limit
 * itself: in any window, admitted ≤ burst + rate × length, and with the clock held still, what
 * the shards hold adds up to exactly what the leases stand at.
 */
import type { Limiter } from '@sluice/core';
import { available, grow, growInBackground, shardKey } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, resourceScope } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shards');

describe('a sharded scope', () => {
  it('grows to the shards its limits ask for and holds exactly the burst across them', async () => {
    const clock = manualClock();
    const check = resourceScope('exact', [
      { name: 'rpm', metric: 'requests', limit: 100, per: 'minute', shards: 4 },
    ]);
    const limiters = [table.limiter({ clock: clock.now }), table.limiter({ clock: clock.now })];
    // The first write finds one item; the scope then splits in halves to 4.
    expect(await decide(limiters[0] as Limiter, check, 1)).toBeDefined();
    await (limiters[0] as Limiter).engine.growth();
    const items = await Promise.all(
      [0, 1, 2, 3, 4].map((s) => table.store.get(shardKey(check.key, s))),
    );
    expect(items.map((item) => item?.n)).toEqual([4n, 4n, 4n, 4n, undefined]);
    expect(items.slice(0, 4).every((item) => item?.ttl === undefined)).toBe(true);

    // 32 callers over two processes, the clock held still: exactly the burst is admitted.
    let admitted = 1;
    await Promise.all(
      Array.from({ length: 32 }, async (_, c) => {
        for (let i = 0; i < 12; i++)
          if (await decide(limiters[c % 2] as Limiter, check, 1)) admitted++;
      }),
    );
    expect(admitted).toBe(100);
    const left = await available(limiters[0]?.engine ?? never(), {
      checks: [check],
      usage: { requests: 1 },
    });
    expect(left.limits).toEqual([
      expect.objectContaining({ name: 'rpm', limit: 100, remaining: 0 }),
    ]);
    expect(left.retryAfterMs).toBeGreaterThan(0);
    expect(left.retryAfterMs).toBeLessThanOrEqual(2_400); // one shard refills one in 4 × 0.6 s
  });

  it('holds exactly the burst while a process still holds the configuration before shards', async () => {
    const clock = manualClock();
    const limit = { name: 'rpm', metric: 'requests', limit: 60, per: 'minute' };
    const before = resourceScope('config-change', [limit]); // a cached, older configuration
    const after = resourceScope('config-change', [{ ...limit, shards: 4 }]);
    const old = table.limiter({ clock: clock.now });
    const current = table.limiter({ clock: clock.now });
    let admitted = 0;
    await Promise.all(
      Array.from({ length: 24 }, async (_, c) => {
        for (let i = 0; i < 6; i++)
          if (await decide(c % 2 ? old : current, c % 2 ? before : after, 1)) admitted++;
      }),
    );
    await current.engine.growth();
    // Whatever each process believed, the items' own share conditions held the limit.
    expect(admitted).toBeLessThanOrEqual(60);
    const left = await available(table.limiter({ clock: clock.now }).engine, { checks: [after] });
    expect(left.limits[0]).toMatchObject({ limit: 60, remaining: 60 - admitted });
  });

  it('reports the whole limit in answers and refusals', async () => {
    const clock = manualClock();
    const check = resourceScope('answers', [
      { name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute', shards: 2 },
    ]);
    const limiter = table.limiter({ clock: clock.now });
    await grow(limiter.engine, check.key, 2);
    const first = await limiter.acquire({ checks: [check], usage: { tokens: 100 } });
    if (!first.allowed) throw new Error('refused');
    expect(first.limits[0]).toMatchObject({ limit: 1_000 });
    // One shard holds 500: a request above it can never fit, and says so.
    const big = await limiter.acquire({ checks: [check], usage: { tokens: 501 } });
    expect(big).toMatchObject({ allowed: false, code: 'exceeds_capacity' });
    for (let i = 0; i < 9; i++) await limiter.acquire({ checks: [check], usage: { tokens: 100 } });
    const refused = await limiter.acquire({ checks: [check], usage: { tokens: 100 } });
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    expect(refused.violations[0]).toMatchObject({ limit: 1_000, remaining: 0 });
  });

  it('never admits more than burst + rate × t in any window while it grows', async () => {
    const clock = manualClock();
    const burst = 60;
    const perSecond = 20;
    const check = resourceScope('window', [
      { name: 'rps', metric: 'requests', limit: perSecond, per: 'second', burst, max_shards: 8 },
    ]);
    const limiters = [1, 2, 3].map(() => table.limiter({ clock: clock.now }));
    const admittedAt: number[] = [];
    const rounds = 40;
    const stepMs = 100;
    for (let round = 0; round < rounds; round++) {
      clock.advance(stepMs);
      const growth =
        round === 5 || round === 15 || round === 25
          ? growInBackground(
              (limiters[round % 3] as Limiter).engine,
              check.key,
              round === 5 ? 2 : round === 15 ? 4 : 8,
            )
          : Promise.resolve();
      await Promise.all(
        Array.from({ length: 24 }, async (_, c) => {
          if (await decide(limiters[c % 3] as Limiter, check, 1)) admittedAt.push(clock.now());
        }),
      );
      await growth;
    }
    const item = await table.store.get(shardKey(check.key, 7));
    expect(item?.n).toBe(8n);
    const times = [...new Set(admittedAt)].sort((a, b) => a - b);
    for (const from of times) {
      for (const to of times) {
        if (to < from) continue;
        const inWindow = admittedAt.filter((t) => t >= from && t <= to).length;
        expect(inWindow).toBeLessThanOrEqual(burst + (perSecond * (to - from)) / 1_000);
      }
    }
    // It did admit: the shards hand out what the limit refills (no capacity lost in splits).
    expect(admittedAt.length).toBeGreaterThanOrEqual(burst + perSecond * 3.5 * 0.9);
  });

  it('gives back whole a refund whose shard a split has since moved the backlog away from', async () => {
    for (const target of [2, 4, 8]) {
      const clock = manualClock();
      const check = resourceScope(`moved-${target}`, [
        { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
      ]);
      const [taker, settler] = [
        table.limiter({ clock: clock.now }),
        table.limiter({ clock: clock.now }),
      ];
      // 1,500 of the whole bucket's 2,000 taken from its one item; the split leaves that item
      // what its share's burst holds, and moves the rest to the new shards.
      const leases = [];
      for (let i = 0; i < 10; i++) leases.push(await decide(taker as Limiter, check, 150));
      await grow((taker as Limiter).engine, check.key, target);
      // Every lease cancelled, by a process that has not seen the shards.
      await Promise.all(
        leases.map((lease) =>
          asClient(() => (settler as Limiter).release(lease?.leaseId ?? never())),
        ),
      );
      const left = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
      expect(left.limits[0]).toMatchObject({ name: 'tpm', remaining: 2_000 });
    }
  });

  it('accounts every unit across splits, debts and refunds (generated runs)', {
    timeout: 120_000,
  }, async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            tokens: fc.integer({ min: 1, max: 60 }),
            settle: fc.constantFrom('keep', 'adjust', 'release', 'cancel', 'cancel', 'cancel'),
            actual: fc.integer({ min: 0, max: 60 }), // more often refunds than debts
            late: fc.constantFrom(true, true, true, false), // settled once the split is done
          }),
          { minLength: 20, maxLength: 60 },
        ),
        fc.constantFrom(2, 4, 8),
        fc.double({ min: 0.5, max: 1, noNaN: true }),
        async (calls, target, splitAt) => {
          run++;
          const clock = manualClock(); // held still: nothing refills, so nothing may be lost
          const check = resourceScope(`units-${run}`, [
            { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 1_000 },
            { name: 'daily', metric: 'tokens', limit: 3_000, window: 'day', max_shards: 8 },
          ]);
          const limiters = [1, 2].map(() => table.limiter({ clock: clock.now }));
          let standing = 0;
          // The split starts once a share of the calls are decided: leases taken before it are
          // settled after it, on shards whose backlog it moved.
          let decided = 0;
          let startSplit = () => {};
          const splitting = new Promise<void>((start) => {
            startSplit = start;
          }).then(() => growInBackground((limiters[1] as Limiter).engine, check.key, target));
          await Promise.all(
            calls.map(async (call, i) => {
              const limiter = limiters[i % 2] as Limiter;
              const lease = await decide(limiter, check, call.tokens);
              if (++decided >= splitAt * calls.length) startSplit();
              if (!lease) return;
              if (call.late) await splitting;
              const other = limiters[(i + 1) % 2] as Limiter; // settled by the other process
              if (call.settle === 'keep') standing += call.tokens;
              else if (call.settle === 'cancel') await asClient(() => other.release(lease.leaseId));
              else if (call.settle === 'release') {
                await asClient(() => other.release(lease.leaseId, { tokens: call.actual }));
                standing += call.actual;
              } else {
                const r = await asClient(() =>
                  other.adjust(lease.leaseId, { tokens: call.actual }),
                );
                standing += r.usage.tokens ?? 0;
              }
            }),
          );
          await splitting;
          await Promise.all(limiters.map((l) => l.engine.idle())); // give-backs after a 503
          const fresh = table.limiter({ clock: clock.now });
          const left = await available(fresh.engine, { checks: [check] });
          const byName = Object.fromEntries(left.limits.map((l) => [l.name, l.remaining]));
          expect(byName).toEqual({ tpm: 1_000 - standing, daily: 3_000 - standing });
        },
      ),
      { seed: 20_261_207, numRuns: 6, endOnFailure: true },
    );
  });

  it('never charges a shard not yet born as a whole scope while a split is under way', async () => {
    // The scope as a split from 2 to 4 shards leaves it until it completes: shard 0 frozen (by a
    // splitter still at work: its freeze is recent), shard 1 whole at 2, shards 2 and 3 not yet
    // born. A process picks among the 4 shards it now knows; a pick of an unborn one finds no
    // item, and a later pick of it must not write it as a whole scope holding the whole limit.
    const clock = manualClock();
    const check = resourceScope('unborn', [
      { name: 'rpm', metric: 'requests', limit: 40, per: 'minute' },
    ]);
    const nowMs = BigInt(Date.now());
    await table.store.update({
      key: check.key,
      set: [
        { attr: 'n', value: -4n },
        { attr: 'nf', value: nowMs + 600_000n }, // never stale in this test (wall time)
      ],
    });
    await table.store.update({ key: shardKey(check.key, 1), set: [{ attr: 'n', value: 2n }] });
    const limiters = [table.limiter({ clock: clock.now }), table.limiter({ clock: clock.now })];
    let admitted = 0;
    await Promise.all(
      Array.from({ length: 4 }, async (_, c) => {
        for (let i = 0; i < 7; i++) {
          const lease = await decide(limiters[c % 2] as Limiter, check, 1).catch(() => undefined);
          if (lease) admitted++;
        }
      }),
    );
    // Only shard 1 admits, at its share: half of the burst of 40.
    expect(admitted).toBe(20);
    const unborn = await Promise.all([2, 3].map((s) => table.store.get(shardKey(check.key, s))));
    expect(unborn).toEqual([undefined, undefined]);
  });

  it('finishes a split whose splitter stopped after freezing, and loses nothing', async () => {
    const clock = manualClock();
    const check = resourceScope('stalled', [
      { name: 'rpm', metric: 'requests', limit: 10, per: 'minute', max_shards: 2 },
    ]);
    const limiter = table.limiter({ clock: clock.now, shardFreezeStaleMs: 1_000 });
    for (let i = 0; i < 4; i++) expect(await decide(limiter, check, 1)).toBeDefined();
    // A splitter froze the item and stopped.
    await table.store.update({
      key: check.key,
      set: [
        { attr: 'n', value: -2n },
        { attr: 'nf', value: BigInt(Date.now() - 1_000) }, // stale (wall time) already
      ],
    });
    clock.advance(1_000); // one request refilled by 1/6 (10 a minute: 6 s each)
    const other = table.limiter({ clock: clock.now });
    let admitted = 0;
    for (let i = 0; i < 12; i++) if (await decide(other, check, 1)) admitted++;
    expect(admitted).toBe(6); // 10 − 4 taken; the 1 s refilled 1/6 of a request
    const halves = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect(halves.map((h) => h?.n)).toEqual([2n, 2n]);
  });
});

function never(): never {
  throw new Error('unreachable');
}
