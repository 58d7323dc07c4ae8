/**
 * GCRA buckets (packages/core/src/engine/gcra.ts) as the pure functions they are: what each
 * plans for a given stored state, exactly, in BigInt. The module is internal to @sluice/core, so
 * this imports it by path. What the table does with the plans is the integration tier's.
 */

import type { BucketLimit } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bucketConsume,
  bucketDebt,
  bucketFits,
  bucketParams,
  bucketRefund,
  bucketStatus,
  bucketWaitNs,
  type ConsumeOptions,
  effectiveCapacity,
  effectiveLimit,
  scaleOf,
} from '../../packages/core/src/engine/gcra.js';
import { applyLocally } from '../../packages/core/src/engine/items.js';
import { ceilDiv, floorDiv, NS_PER_MS, NS_PER_S } from '../../packages/core/src/engine/nanos.js';
import type { Step } from '../../packages/core/src/engine/step.js';
import type { ItemState } from '../../packages/core/src/store/types.js';
import { bucket, bucketState } from '../support/stored.js';

/** Now, 1,000 s after the epoch; and 10 a minute: one unit costs a minute in the TAT's units. */
const NOW_NS = 1_000n * NS_PER_S;
const NOW_MS = NOW_NS / NS_PER_MS;
const MINUTE = 60n * NS_PER_S;
const TEN = bucket(10); // 10 a minute, burst 10
const X = NOW_NS * 10n; // now, in TEN's units (x = TAT · L)
const FULL: ConsumeOptions = { priority: 100, maxWaitNs: 0n, mayDeny: true };

const idleCondition = (scale: string, nowX: bigint) => ({
  or: [
    { absent: 'b_tpm' },
    {
      and: [
        { attr: 's_tpm', op: '=', value: scale },
        { attr: 'b_tpm', op: '<=', value: nowX },
      ],
    },
  ],
});

/** The state a write leaves, applied as the table would apply it. */
function applied(state: ItemState | undefined, step: Step): ItemState {
  if (step.kind !== 'write') throw new Error(`expected a write, got ${step.kind}`);
  return applyLocally(state ?? {}, step.set);
}

describe('bucketParams', () => {
  it('charges a period per unit, scaled by the limit, against burst periods', () => {
    expect(bucketParams(bucket(10, 60, 25))).toEqual({ L: 10n, P: MINUTE, tau: 25n * MINUTE });
  });

  it('charges a shard of n the period n times over, against whole units of the burst', () => {
    // 10 over 4 shards: the first two hold 3 units, the others 2 (10 in all, none a fraction).
    const taus = [0, 1, 2, 3].map(
      (shardIndex) => bucketParams(bucket(10, 60, 10, { share: 4, shardIndex })).tau,
    );

    expect(bucketParams(bucket(10, 60, 10, { share: 4 })).P).toBe(4n * MINUTE);
    expect(taus).toEqual([12n * MINUTE, 12n * MINUTE, 8n * MINUTE, 8n * MINUTE]);
  });

  it('lets a lower priority fill only its share of the burst, exactly', () => {
    expect(effectiveCapacity(TEN, 100)).toBe(10n * MINUTE);
    expect(effectiveCapacity(TEN, 50)).toBe(5n * MINUTE);
    expect(effectiveCapacity(bucket(3, 1), 33)).toBe(990_000_000n); // 3 s · 0.33
  });

  it('says an amount can never fit when it exceeds the burst, or a shard its share of it', () => {
    expect(bucketFits(TEN, 10, 100)).toBe(true);
    expect(bucketFits(TEN, 11, 100)).toBe(false);
    expect(bucketFits(TEN, 6, 50)).toBe(false);
    expect(bucketFits(bucket(10, 60, 10, { share: 2 }), 5, 100)).toBe(true);
    expect(bucketFits(bucket(10, 60, 10, { share: 2 }), 6, 100)).toBe(false);
  });

  it('fits n units on a shard exactly when its share of the burst holds them, the shares adding up to the burst', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 20_000 }),
        (burst, share, n) => {
          const held = Array.from({ length: share }, (_, shardIndex) => {
            const shard = bucket(burst, 60, burst, { share, shardIndex });
            const { P, tau } = bucketParams(shard);
            expect(bucketFits(shard, n, 100)).toBe(BigInt(n) * P <= tau);
            return Number(tau / P);
          });
          expect(held.reduce((a, b) => a + b, 0)).toBe(burst);
          expect(Math.max(...held) - Math.min(...held)).toBeLessThanOrEqual(1);
        },
      ),
      { seed: 20_260_301, numRuns: 300 },
    );
  });

  it('stores the definition as limit/period/burst', () => {
    expect(scaleOf(bucket(10, 60, 25))).toBe('10/60/25');
  });
});

describe('floorDiv and ceilDiv', () => {
  it('round toward −∞ and +∞, also for negative numerators', () => {
    expect([floorDiv(7n, 2n), floorDiv(-7n, 2n), floorDiv(-6n, 2n)]).toEqual([3n, -4n, -3n]);
    expect([ceilDiv(7n, 2n), ceilDiv(-7n, 2n), ceilDiv(6n, 2n)]).toEqual([4n, -3n, 3n]);
  });

  it('bracket the exact quotient', () => {
    fc.assert(
      fc.property(fc.bigInt(-(10n ** 30n), 10n ** 30n), fc.bigInt(1n, 10n ** 15n), (a, b) => {
        const f = floorDiv(a, b);
        const c = ceilDiv(a, b);
        expect(f * b <= a && a < (f + 1n) * b).toBe(true);
        expect((c - 1n) * b < a && a <= c * b).toBe(true);
      }),
      { seed: 20_260_302, numRuns: 1_000 },
    );
  });
});

describe('bucketConsume', () => {
  it('guesses idle when nothing is known: the TAT is set if absent or idle', () => {
    const step = bucketConsume(TEN, undefined, NOW_NS, 3, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [
        { attr: 'b_tpm', value: X + 3n * MINUTE },
        { attr: 's_tpm', value: '10/60/10' },
      ],
      condition: idleCondition('10/60/10', X),
      horizonNs: 60n * NS_PER_S, // a full burst drains in a minute
    });
  });

  it('writes the idle branch for a bucket whose TAT is in the past', () => {
    const state = bucketState(X - 5n * MINUTE, '10/60/10');

    const step = bucketConsume(TEN, state, NOW_NS, 3, FULL);

    expect(step).toEqual(bucketConsume(TEN, undefined, NOW_NS, 3, FULL));
  });

  it('adds to a busy TAT, conditioned on room for the increment', () => {
    const state = bucketState(X + 3n * MINUTE, '10/60/10');

    const step = bucketConsume(TEN, state, NOW_NS, 4, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'b_tpm', add: 4n * MINUTE }],
      condition: {
        and: [
          { attr: 's_tpm', op: '=', value: '10/60/10' },
          { attr: 'b_tpm', op: '>=', value: X },
          { attr: 'b_tpm', op: '<=', value: X + 6n * MINUTE }, // 10 − 4 units of room
        ],
      },
      horizonNs: 60n * NS_PER_S,
    });
  });

  it('admits the unit that fills the burst exactly', () => {
    const state = bucketState(X + 6n * MINUTE, '10/60/10');

    expect(bucketConsume(TEN, state, NOW_NS, 4, FULL).kind).toBe('write');
  });

  it('denies past the burst, until the missing units have refilled', () => {
    const state = bucketState(X + 7n * MINUTE, '10/60/10');

    const step = bucketConsume(TEN, state, NOW_NS, 4, FULL);

    expect(step).toEqual({ kind: 'deny', retryAfterNs: 6n * NS_PER_S }); // one unit at 10/min
  });

  it('never denies from a state it may not trust: it guesses idle and lets the table decide', () => {
    const state = bucketState(X + 9n * MINUTE, '10/60/10');

    const step = bucketConsume(TEN, state, NOW_NS, 4, { ...FULL, mayDeny: false });

    expect(step).toEqual(bucketConsume(TEN, undefined, NOW_NS, 4, FULL));
  });

  it('keeps the last part of the burst for higher priorities', () => {
    const state = bucketState(X + 4n * MINUTE, '10/60/10');
    const half = { ...FULL, priority: 50 };

    const one = bucketConsume(TEN, state, NOW_NS, 1, half);
    const two = bucketConsume(TEN, state, NOW_NS, 2, half);

    expect(one).toMatchObject({
      kind: 'write',
      condition: { and: [{}, {}, { attr: 'b_tpm', op: '<=', value: X + 4n * MINUTE }] },
      horizonNs: 30n * NS_PER_S,
    });
    expect(two).toEqual({ kind: 'deny', retryAfterNs: 6n * NS_PER_S });
  });

  it('lets full priority queue behind the burst up to its wait, and no lower priority', () => {
    const state = bucketState(X + 7n * MINUTE, '10/60/10');
    const wait = { ...FULL, maxWaitNs: 6n * NS_PER_S };

    const queued = bucketConsume(TEN, state, NOW_NS, 4, wait);
    const lower = bucketConsume(TEN, state, NOW_NS, 4, { ...wait, priority: 99 });

    expect(queued).toMatchObject({
      kind: 'write',
      condition: { and: [{}, {}, { attr: 'b_tpm', op: '<=', value: X + 7n * MINUTE }] },
      horizonNs: 66n * NS_PER_S,
    });
    expect(lower.kind).toBe('deny');
  });

  it('charges a shard its share: 1/n of the rate and of the burst', () => {
    const shard = bucket(10, 60, 10, { share: 2 });

    const step = bucketConsume(shard, undefined, NOW_NS, 3, FULL);
    const full = bucketConsume(shard, applied(undefined, step), NOW_NS, 3, FULL);

    expect(applied(undefined, step).b_tpm).toBe(X + 6n * MINUTE); // 3 units at twice the cost
    expect(full).toEqual({ kind: 'deny', retryAfterNs: 12n * NS_PER_S }); // 5 a minute
  });

  it('converts a bucket stored under an older definition, keeping its usage in units', () => {
    const newer = bucket(20, 60, 20, { revision: 2 });
    const state = bucketState(X + 7n * MINUTE, '10/60/10'); // 7 of 10 used
    const x20 = NOW_NS * 20n;

    const step = bucketConsume(newer, state, NOW_NS, 1, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [
        { attr: 'b_tpm', value: x20 + 8n * MINUTE }, // 7 + 1 of 20
        { attr: 's_tpm', value: '20/60/20' },
        { attr: 'r_tpm', value: 2n },
        { attr: 'c_tpm', value: NOW_MS + 60_000n },
      ],
      condition: {
        and: [
          { attr: 'b_tpm', op: '=', value: X + 7n * MINUTE },
          { attr: 's_tpm', op: '=', value: '10/60/10' },
        ],
      },
      horizonNs: 60n * NS_PER_S,
      converts: true,
    });
  });

  it('lets processes that hold the older definition adopt a conversion for adoptForMs', () => {
    const step = bucketConsume(
      bucket(20, 60, 20, { revision: 2 }),
      bucketState(X, '10/60/10'),
      NOW_NS,
      1,
      { ...FULL, adoptForMs: 5_000 },
    );

    expect(step).toMatchObject({ set: [{}, {}, {}, { attr: 'c_tpm', value: NOW_MS + 5_000n }] });
  });

  it('refuses after a conversion to a smaller limit that the usage already exceeds', () => {
    const smaller = bucket(5, 60, 5, { revision: 2 });
    const state = bucketState(X + 9n * MINUTE, '10/60/10'); // 9 used: more than the new 5

    const step = bucketConsume(smaller, state, NOW_NS, 1, FULL);

    expect(step).toEqual({ kind: 'deny', retryAfterNs: 60n * NS_PER_S }); // 5 units at 5/min
  });

  it('converts a new period by the units used, and keeps the TAT when only the burst changed', () => {
    const state = bucketState(X + 7n * MINUTE, '10/60/10');

    const halfMinute = bucketConsume(bucket(10, 30, 10, { revision: 2 }), state, NOW_NS, 1, FULL);
    const burst = bucketConsume(bucket(10, 60, 20, { revision: 2 }), state, NOW_NS, 1, FULL);

    expect(applied(state, halfMinute).b_tpm).toBe(X + 8n * 30n * NS_PER_S);
    expect(applied(state, burst).b_tpm).toBe(X + 8n * MINUTE);
  });

  it('adopts a newer stored definition instead of converting it back', () => {
    const older = bucket(10, 60, 10, { revision: 1 });
    const x20 = NOW_NS * 20n;
    const state = bucketState(x20 + 3n * MINUTE, '20/60/20', {
      revision: 2n,
      adoptUntilMs: NOW_MS + 1n,
    });

    const step = bucketConsume(older, state, NOW_NS, 1, FULL);

    expect(step).toMatchObject({
      kind: 'write',
      set: [{ attr: 'b_tpm', add: MINUTE }],
      condition: { and: [{ attr: 's_tpm', op: '=', value: '20/60/20' }, {}, {}] },
    });
  });

  it('admits again at retryAfter, and not a nanosecond before', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000 }),
        fc.constantFrom(1, 60, 3_600, 86_400),
        fc.integer({ min: 1, max: 3 }),
        fc.bigInt(0n, 10n ** 15n),
        fc.integer({ min: 1, max: 1_000 }),
        (limit, periodSeconds, burstTimes, backlogNs, wanted) => {
          const def = bucket(limit, periodSeconds, limit * burstTimes);
          const amount = Math.min(wanted, def.burst);
          const L = BigInt(limit);
          const state = bucketState(NOW_NS * L + backlogNs * L, scaleOf(def));

          const step = bucketConsume(def, state, NOW_NS, amount, FULL);
          fc.pre(step.kind === 'deny');
          const retry = step.kind === 'deny' ? step.retryAfterNs : 0n;

          expect(bucketConsume(def, state, NOW_NS + retry, amount, FULL).kind).toBe('write');
          expect(bucketConsume(def, state, NOW_NS + retry - 1n, amount, FULL).kind).toBe('deny');
        },
      ),
      { seed: 20_260_303, numRuns: 300 },
    );
  });
});

describe('effectiveLimit', () => {
  const mine = bucket(10, 60, 10, { revision: 3 });
  const stored = (scale: string, revision: bigint, adoptUntilMs = NOW_MS + 1n) =>
    bucketState(X, scale, { revision, adoptUntilMs });

  it('keeps an inline limit, whatever the item holds', () => {
    expect(effectiveLimit(TEN, stored('20/60/20', 9n), NOW_NS)).toBe(TEN);
  });

  it('keeps its own definition when the item holds none, or an older one', () => {
    expect(effectiveLimit(mine, undefined, NOW_NS)).toBe(mine);
    expect(effectiveLimit(mine, stored('20/60/20', 2n), NOW_NS)).toBe(mine);
  });

  it('adopts a later revision while its adoption window lasts', () => {
    const adopted = effectiveLimit(mine, stored('20/30/40', 4n), NOW_NS);

    expect(adopted).toEqual({ ...mine, limit: 20, periodSeconds: 30, burst: 40, revision: 4 });
  });

  it('trusts no stored revision once the window has passed', () => {
    expect(effectiveLimit(mine, stored('20/60/20', 4n, NOW_MS), NOW_NS)).toBe(mine);
  });

  it('breaks a tie of revisions by the greater definition, so both sides converge', () => {
    expect(effectiveLimit(mine, stored('20/60/20', 3n), NOW_NS)).toMatchObject({ limit: 20 });
    expect(effectiveLimit(mine, stored('1/60/1', 3n), NOW_NS)).toBe(mine);
  });

  it('reads a stored definition without a burst as a burst of its limit, without a period as a second', () => {
    expect(effectiveLimit(mine, stored('20/60', 4n), NOW_NS)).toMatchObject({ burst: 20 });
    expect(effectiveLimit(mine, stored('20', 4n), NOW_NS)).toMatchObject({
      limit: 20,
      periodSeconds: 1,
      burst: 20,
    });
  });
});

describe('bucketDebt', () => {
  it('starts an idle bucket at now plus the debt', () => {
    const step = bucketDebt(TEN, undefined, NOW_NS, 2n);

    expect(step).toEqual({
      kind: 'write',
      set: [
        { attr: 'b_tpm', value: X + 2n * MINUTE },
        { attr: 's_tpm', value: '10/60/10' },
      ],
      condition: idleCondition('10/60/10', X),
      horizonNs: 12n * NS_PER_S,
    });
  });

  it('adds to a busy bucket with no capacity condition, bounded so the TTL covers it', () => {
    const state = bucketState(X + 9n * MINUTE, '10/60/10');

    const step = bucketDebt(TEN, state, NOW_NS, 5n);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'b_tpm', add: 5n * MINUTE }],
      condition: {
        and: [
          { attr: 's_tpm', op: '=', value: '10/60/10' },
          { attr: 'b_tpm', op: '>=', value: X },
          { attr: 'b_tpm', op: '<=', value: X + 19n * MINUTE }, // a burst more than last seen
        ],
      },
      horizonNs: 144n * NS_PER_S, // (9 + 10 + 5) units at 10/min
    });
  });

  it('charges at the definition the item holds now, not the one the lease took', () => {
    const state = bucketState(X + 2n * MINUTE, '10/30/10');

    const step = bucketDebt(TEN, state, NOW_NS, 3n);

    expect(step).toMatchObject({
      set: [{ add: 3n * 30n * NS_PER_S }],
      condition: { and: [{ value: '10/30/10' }, {}, {}] },
    });
  });

  it('takes the bucket past empty: what remains goes negative', () => {
    const state = bucketState(X + 9n * MINUTE, '10/60/10');

    const debted = applied(state, bucketDebt(TEN, state, NOW_NS, 3n));

    expect(bucketStatus(TEN, debted, NOW_NS).remaining).toBe(-2n);
  });
});

describe('bucketRefund', () => {
  const held = (amount: bigint, elapsedNs = 0n) => ({ amount, elapsedNs });

  it('moves the TAT back by what is returned, at the stored definition', () => {
    const state = bucketState(X + 5n * MINUTE, '10/60/10');

    const step = bucketRefund(TEN, state, 3n, held(5n));

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'b_tpm', add: -3n * MINUTE }],
      condition: { attr: 's_tpm', op: '=', value: '10/60/10' },
    });
  });

  it('returns only what the lease still holds after the bucket refilled', () => {
    const state = bucketState(X + 5n * MINUTE, '10/60/10');

    const step = bucketRefund(TEN, state, 5n, held(5n, 12n * NS_PER_S)); // 2 units refilled

    expect(step).toMatchObject({ set: [{ add: -3n * MINUTE }] });
  });

  it('returns nothing once all the lease took has refilled', () => {
    const state = bucketState(X, '10/60/10');

    expect(bucketRefund(TEN, state, 5n, held(5n, 30n * NS_PER_S))).toEqual({ kind: 'skip' });
    expect(bucketRefund(TEN, state, 5n, held(5n, 31n * NS_PER_S))).toEqual({ kind: 'skip' });
  });

  it('counts the refill at the faster of the lease’s and the stored definition', () => {
    const state = bucketState(NOW_NS * 20n + 5n * MINUTE, '20/60/20'); // doubled since

    const step = bucketRefund(TEN, state, 5n, held(5n, 6n * NS_PER_S)); // 2 units at 20/min

    expect(step).toMatchObject({ set: [{ add: -3n * MINUTE }] });
  });

  it('counts a negative elapsed time (a clock behind) as none', () => {
    const state = bucketState(X + 5n * MINUTE, '10/60/10');

    const step = bucketRefund(TEN, state, 5n, held(5n, -NS_PER_S));

    expect(step).toMatchObject({ set: [{ add: -5n * MINUTE }] });
  });

  it('skips a bucket known to be gone, on the condition that it still is', () => {
    const step = bucketRefund(TEN, { g: 1n }, 5n, held(5n));

    expect(step).toEqual({ kind: 'skip', assuming: { absent: 'b_tpm' } });
  });

  it('refunds at the lease’s definition when nothing is known of the item', () => {
    const step = bucketRefund(TEN, undefined, 2n, held(5n));

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'b_tpm', add: -2n * MINUTE }],
      condition: { attr: 's_tpm', op: '=', value: '10/60/10' },
    });
  });

  const definitions = fc
    .record({
      limit: fc.integer({ min: 1, max: 10_000 }),
      periodSeconds: fc.constantFrom(1, 60, 3_600, 86_400),
      burstTimes: fc.integer({ min: 1, max: 4 }),
    })
    .map(({ limit, periodSeconds, burstTimes }) =>
      bucket(limit, periodSeconds, limit * burstTimes),
    );

  /**
   * A bucket `def` holding a backlog of `millionths` of its capacity (idle when negative: a TAT
   * that far in the past), and an amount that still fits it.
   */
  function taking(def: BucketLimit, millionths: number, wanted: number) {
    const { L, P, tau } = bucketParams(def);
    const backlogX = (tau * BigInt(millionths)) / 1_000_000n;
    const room = (tau - (backlogX > 0n ? backlogX : 0n)) / P;
    fc.pre(room >= 1n);
    const amount = 1 + (wanted % Number(room));
    return { state: bucketState(NOW_NS * L + backlogX, scaleOf(def)), amount };
  }
  const millionths = fc.integer({ min: -1_000_000, max: 1_000_000 });

  it('undoes a consume of the same amount at the same instant', () => {
    fc.assert(
      fc.property(definitions, millionths, fc.nat(), (def, share, wanted) => {
        const { state, amount } = taking(def, share, wanted);

        const taken = applied(state, bucketConsume(def, state, NOW_NS, amount, FULL));
        const back = applied(taken, bucketRefund(def, taken, BigInt(amount), held(BigInt(amount))));

        expect(bucketStatus(def, back, NOW_NS)).toEqual(bucketStatus(def, state, NOW_NS));
        if (share > 0) expect(back).toEqual(state); // a busy TAT exactly as it was
      }),
      { seed: 20_260_304, numRuns: 500 },
    );
  });

  it('never gives back a unit that has refilled since the acquire', () => {
    fc.assert(
      fc.property(
        definitions,
        millionths,
        fc.nat(),
        fc.bigInt(0n, 10n ** 14n),
        (def, share, wanted, elapsedNs) => {
          const { state, amount } = taking(def, share, wanted);
          const taken = applied(state, bucketConsume(def, state, NOW_NS, amount, FULL));
          const later = NOW_NS + elapsedNs;

          const refund = bucketRefund(def, taken, BigInt(amount), held(BigInt(amount), elapsedNs));
          const back = refund.kind === 'write' ? applied(taken, refund) : taken;

          const backlog = (s: ItemState) => bucketStatus(def, s, later).backlogX;
          expect(backlog(back)).toBeGreaterThanOrEqual(backlog(state)); // never more room
          expect(backlog(back)).toBeLessThanOrEqual(backlog(taken)); // and never less
        },
      ),
      { seed: 20_260_305, numRuns: 500 },
    );
  });
});

describe('bucketStatus', () => {
  it('shows a bucket never written as its full burst, a shard its share of it', () => {
    expect(bucketStatus(TEN, undefined, NOW_NS)).toEqual({
      remaining: 10n,
      resetNs: 0n,
      backlogX: 0n,
    });
    const shard = (shardIndex: number) => bucket(10, 60, 10, { share: 4, shardIndex });
    expect(bucketStatus(shard(0), undefined, NOW_NS).remaining).toBe(3n);
    expect(bucketStatus(shard(3), undefined, NOW_NS).remaining).toBe(2n);
  });

  it('shows whole units left and the time until the bucket is full', () => {
    const state = bucketState(X + 3n * MINUTE + 1n, '10/60/10');

    expect(bucketStatus(TEN, state, NOW_NS)).toEqual({
      remaining: 6n, // 3 units and a fraction used
      resetNs: 18n * NS_PER_S + 1n,
      backlogX: 3n * MINUTE + 1n,
    });
  });

  it('shows a TAT in the past as a full bucket', () => {
    const state = bucketState(X - MINUTE, '10/60/10');

    expect(bucketStatus(TEN, state, NOW_NS)).toEqual({
      remaining: 10n,
      resetNs: 0n,
      backlogX: 0n,
    });
  });

  it('shows a bucket stored under another definition converted, usage kept', () => {
    const state = bucketState(X + 7n * MINUTE, '10/60/10');

    const status = bucketStatus(bucket(20, 60, 20, { revision: 2 }), state, NOW_NS);

    expect(status.remaining).toBe(13n);
  });

  it('leaves burst − n after n units from a full bucket', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.constantFrom(1, 60, 86_400),
        fc.nat(),
        (limit, periodSeconds, wanted) => {
          const def = bucket(limit, periodSeconds);
          const n = wanted % (limit + 1);
          const taken = applied(undefined, bucketConsume(def, undefined, NOW_NS, n, FULL));

          expect(bucketStatus(def, taken, NOW_NS).remaining).toBe(BigInt(limit - n));
        },
      ),
      { seed: 20_260_306, numRuns: 300 },
    );
  });
});

describe('bucketWaitNs', () => {
  it('is zero within the capacity, and the time until the backlog fits past it', () => {
    const within = bucketState(X + 10n * MINUTE, '10/60/10');
    const queued = bucketState(X + 11n * MINUTE, '10/60/10');

    expect(bucketWaitNs(TEN, within, NOW_NS, 100)).toBe(0n);
    expect(bucketWaitNs(TEN, queued, NOW_NS, 100)).toBe(6n * NS_PER_S);
    expect(bucketWaitNs(TEN, within, NOW_NS, 50)).toBe(30n * NS_PER_S);
  });
});
