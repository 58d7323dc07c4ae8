/**
 * Write combining, in a process that serves many calls at once (a `Limiter`, `npm start`):
 * concurrent acquires on one item reach DynamoDB together, and admit exactly what they would have
 * admitted one after another.
 */
import {
  DeadlineExceededError,
  Limiter,
  type ScopeCheck,
  StoreUnavailableError,
} from '@sluice/core';
import { bucketAttributes } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { check, remaining, rpm, tpm } from '../support/limits.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('combining');

/** One unit of a per-minute limit, in the bucket's units: a minute in ns. */
const P = 60_000_000_000n;
const NS_PER_MS = 1_000_000n;

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
    const c = check([rpm(10)]);

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
    const d = check([rpm(10)]);
    await Promise.all(Array.from({ length: 40 }, () => plain.acquire({ checks: [d], usage: {} })));
    expect(alone.writesTo(d)).toBeGreaterThanOrEqual(40);
  });

  it('charge a combined write the sum of its calls, and settle each lease on its own', async () => {
    const clock = manualClock();
    const limiter = new Limiter({ store: table.store, clock: clock.now });
    const c = check([tpm(10_000)]);
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
    const c = check([rpm(20)]);

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
    const org = check([rpm(100)]);
    const orgId = `${org.key.pk} ${org.key.sk}`;
    // The organisation's second write is the combined one: DynamoDB throttles it.
    const { store } = countingStore((count, id) =>
      id === orgId && count === 1
        ? new StoreUnavailableError('throttled', { notApplied: true })
        : undefined,
    );
    const limiter = new Limiter({ store, clock: clock.now });
    const keys = Array.from({ length: 12 }, () => check([rpm(100)]));

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

  it('leave out a call whose caller gave up while it waited, and admit the one beside it', async () => {
    const clock = manualClock();
    const c = check([tpm(1_000)]);
    const id = `${c.key.pk} ${c.key.sk}`;
    const hold = holdPoint();
    let writes = 0;
    const store = new HookedStore(table.store, async (update) => {
      if (`${update.key.pk} ${update.key.sk}` === id && writes++ === 0) await hold.arrive();
    });
    const limiter = new Limiter({ store, clock: clock.now });
    const aWhile = () => new Promise((resolve) => setTimeout(resolve, 50));

    const first = limiter.acquire({ checks: [c], usage: { tokens: 500 } });
    await hold.reached; // the first write is in flight: the next calls wait to go together
    const deadline = new AbortController();
    const gaveUp = limiter.acquire({
      checks: [c],
      usage: { tokens: 500 },
      signal: deadline.signal,
    });
    await aWhile();
    const beside = limiter.acquire({ checks: [c], usage: { tokens: 500 } });
    await aWhile();
    deadline.abort(); // its caller stops waiting before the write ahead of it has landed
    await expect(gaveUp).rejects.toBeInstanceOf(DeadlineExceededError);
    hold.release();

    expect((await first).allowed).toBe(true);
    expect((await beside).allowed).toBe(true); // 500 + 500 fit 1,000: it took no place
    await limiter.engine.idle();
    expect(await remaining(limiter, c)).toEqual([0]);
    expect(writes).toBe(2); // the first, then the call beside it alone: none for the one gone
  });

  it('from two processes admit exactly the burst between them', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check([rpm(20)]);

    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).acquire({ checks: [c], usage: {} })),
    );

    expect(results.filter((r) => r.allowed)).toHaveLength(20);
    for (const r of results)
      if (!r.allowed) expect(r.violations.map((v) => v.name)).toEqual(['rpm']);
    expect(await tat(c)).toBe(nowX(clock.now(), 20) + 20n * P);
  });
});

describe('generated rounds of mixed calls from three processes', () => {
  const call = fc.record({
    key: fc.nat(5),
    tokens: fc.integer({ min: 1, max: 2_500 }),
    priority: fc.constantFrom(100, 100, 60),
    // A reservation writes alone: mixed in, it races the combined writes.
    waitMs: fc.constantFrom(0, 0, 0, 20_000),
  });
  const rounds = fc.array(
    fc.record({
      advanceMs: fc.integer({ min: 0, max: 20_000 }),
      calls: fc.array(call, { minLength: 8, maxLength: 48 }),
    }),
    { minLength: 3, maxLength: 6 },
  );

  it('charge every item exactly what its admitted calls took, and never more than it holds', async () => {
    await fc.assert(
      fc.asyncProperty(rounds, async (plan) => {
        const clock = manualClock(Date.parse('2026-06-01T08:00:00Z'));
        const processes = [0, 1, 2].map(
          () => new Limiter({ store: table.store, clock: clock.now }),
        );
        // Each call takes from its key and from the org all keys share (the combined item),
        // so a key's refusal gives back what the org admitted.
        const org = check([{ ...tpm(12_000), name: 'org-tpm' }]);
        const keys = Array.from({ length: 6 }, () => check([{ ...tpm(5_000), name: 'key-tpm' }]));
        const items = [
          { check: org, limit: 12_000, model: 0n },
          ...keys.map((k) => ({ check: k, limit: 5_000, model: 0n })),
        ];
        let decisions = 0;
        let contended = 0;
        for (const round of plan) {
          clock.advance(round.advanceMs);
          const results = await Promise.all(
            round.calls.map((c, i) =>
              (processes[i % 3] as Limiter).acquire({
                checks: [keys[c.key] as ScopeCheck, org],
                usage: { tokens: c.tokens },
                priority: c.priority,
                maxWaitMs: c.waitMs,
              }),
            ),
          );
          const admitted = round.calls.filter((_, i) => results[i]?.allowed);
          for (const [j, item] of items.entries()) {
            const at = nowX(clock.now(), item.limit);
            const taken = admitted
              .filter((c) => j === 0 || c.key === j - 1)
              .reduce((sum, c) => sum + BigInt(c.tokens), 0n);
            if (item.model < at) item.model = at; // idle: the bucket refilled
            item.model += taken * P;
            const backlog = (x: bigint) => (x > at ? x - at : 0n);
            // Every unit accounted for: what the item holds is what its admitted calls took.
            expect(backlog(await tat(item.check))).toBe(backlog(item.model));
            // Nothing over-admitted: at most the burst, and the longest reservation behind it.
            const tau = BigInt(item.limit) * P;
            expect(backlog(item.model)).toBeLessThanOrEqual(
              tau + 20_000n * NS_PER_MS * BigInt(item.limit),
            );
          }
          results.forEach((r, i) => {
            if (r.allowed && round.calls[i]?.waitMs === 0) expect(r.waitMs).toBe(0);
            if (!r.allowed && r.violations.length === 0) contended++;
          });
          decisions += round.calls.length;
        }
        // Refusals that only lost races on the branch guess stay within the retry slack.
        expect(contended).toBeLessThanOrEqual(Math.ceil(decisions * 0.02));
      }),
      { seed: 20261203, numRuns: 6, endOnFailure: true },
    );
  });
});
