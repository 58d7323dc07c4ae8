/**
 * Writes to scope items (packages/core/src/engine/items.ts): per-limit steps combined into one
 * conditional update with its TTL, and the update a settlement sends to move an item between two
 * lease totals. Pure given what the engine remembers of the item: no table here (the engine's
 * store is never called). Internal to @sluice/core, so imported by path.
 */
import type { ScopeCheck } from '@sluice/core';
import { EngineState } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import {
  applyLocally,
  combine,
  deltaUpdates,
  leasedItem,
  zeroed,
} from '../../packages/core/src/engine/items.js';
import type { LeasedItem, LeasedLimit } from '../../packages/core/src/engine/lease.js';
import { NS_PER_S } from '../../packages/core/src/engine/nanos.js';
import { generationOf } from '../../packages/core/src/engine/shards.js';
import type { Step } from '../../packages/core/src/engine/step.js';
import type { ItemKey, ItemState, Store } from '../../packages/core/src/store/types.js';
import { bucket, bucketState, quota, quotaState } from '../support/stored.js';

const NOW_MS = 1_000_000; // 1,000 s after the epoch
const NOW_NS = 1_000n * NS_PER_S;
const MINUTE = 60n * NS_PER_S;
const X = NOW_NS * 10n; // now, in the units of 10 a minute
const KEY: ItemKey = { pk: 'entity#e', sk: 'gpt-4o' };
const TODAY = 0; // the epoch's day: NOW_MS is in it

const unreachable = () => {
  throw new Error('the pure parts never call the store');
};
const store: Store = { update: unreachable, transact: unreachable, get: unreachable };

/** An engine that remembers `state` of `key` (nothing when undefined). */
function engineWith(state?: ItemState, key: ItemKey = KEY): EngineState {
  const engine = new EngineState({ store, clock: () => NOW_MS });
  if (state) engine.remember(key, state);
  return engine;
}

const write = (set: Extract<Step, { kind: 'write' }>['set'], extra: object = {}): Step => ({
  kind: 'write',
  set,
  ...extra,
});
const scaleIs = { attr: 's_tpm', op: '=', value: '10/60/10' } as const;

/** Epoch seconds of an ISO instant, as the TTL attribute holds them. */
const epochS = (iso: string) => BigInt(Date.parse(iso) / 1_000);

describe('combine', () => {
  it('writes nothing when every step skips', () => {
    expect(combine(engineWith(), KEY, [{ kind: 'skip' }], undefined, NOW_MS)).toBeNull();
  });

  it('sends a single condition as it is, and no condition when none is asked', () => {
    const refund = write([{ attr: 'b_tpm', add: -1n }], { condition: scaleIs });
    const bare = write([{ attr: 'b_tpm', add: -1n }]);

    expect(combine(engineWith(), KEY, [refund], undefined, NOW_MS)).toEqual({
      key: KEY,
      set: [{ attr: 'b_tpm', add: -1n }],
      condition: scaleIs,
    });
    expect(combine(engineWith(), KEY, [bare], undefined, NOW_MS)).toEqual({
      key: KEY,
      set: [{ attr: 'b_tpm', add: -1n }],
    });
  });

  it('sets the TTL a day past the furthest horizon, rounded up to the hour', () => {
    const nowMs = Date.parse('2026-03-10T15:00:00Z');
    const short = write([{ attr: 'b_a', add: 1n }], { condition: { exists: 'b_a' } });
    const long = write([{ attr: 'b_b', add: 1n }], { horizonNs: 60n * NS_PER_S });
    const ttl = epochS('2026-03-11T16:00:00Z'); // 15:01 the next day, rounded up

    const update = combine(engineWith(), KEY, [short, long], undefined, nowMs, { exists: 'g' });

    expect(update).toEqual({
      key: KEY,
      set: [
        { attr: 'b_a', add: 1n },
        { attr: 'b_b', add: 1n },
        { attr: 'ttl', value: ttl },
      ],
      condition: {
        and: [
          { exists: 'b_a' },
          { or: [{ absent: 'ttl' }, { attr: 'ttl', op: '<=', value: ttl }] },
          { exists: 'g' },
        ],
      },
    });
  });

  it('never shortens the TTL the item was last seen with', () => {
    const nowMs = Date.parse('2026-03-10T15:00:00Z');
    const later = epochS('2026-04-01T00:00:00Z');
    const step = write([{ attr: 'b_tpm', add: 1n }], { horizonNs: NS_PER_S });

    const update = combine(engineWith(), KEY, [step], { ttl: later }, nowMs);

    expect(update?.set).toContainEqual({ attr: 'ttl', value: later });
    expect(update?.condition).toEqual({
      or: [{ absent: 'ttl' }, { attr: 'ttl', op: '<=', value: later }],
    });
  });

  it('gives a shard no TTL: its scope’s other shards count on it', () => {
    const step = write([{ attr: 'b_tpm', add: 1n }], { horizonNs: NS_PER_S });

    const update = combine(engineWith(), KEY, [step], undefined, NOW_MS, undefined, 2);

    expect(update).toEqual({ key: KEY, set: [{ attr: 'b_tpm', add: 1n }] });
  });
});

/** The write to the item itself (unsharded here: nothing spills). */
type DeltaArgs = Parameters<typeof deltaUpdates>;
const deltaUpdate = (
  ...[engine, item, previous, next, nowMs, acquiredAtMs]: [
    DeltaArgs[0],
    DeltaArgs[1],
    DeltaArgs[2],
    DeltaArgs[3],
    DeltaArgs[4],
    DeltaArgs[5],
  ]
) => deltaUpdates(engine, item, previous, next, nowMs, acquiredAtMs, 99).update;

describe('deltaUpdates', () => {
  const item = (limits: readonly LeasedLimit[], generation = 0, key = KEY): LeasedItem => ({
    key,
    scope: 'entity',
    limits,
    generation,
  });
  const tpm = item([bucket(10)]);
  const generationZero = { or: [{ absent: 'g' }, { attr: 'g', op: '=', value: 0n }] };
  const whole = { absent: 'n' };

  it('writes nothing when the totals do not move', () => {
    const update = deltaUpdate(engineWith(), tpm, { tokens: 5 }, { tokens: 5 }, NOW_MS, NOW_MS);

    expect(update).toBeNull();
  });

  it('charges debt with no generation condition, on the item as a whole', () => {
    const update = deltaUpdate(engineWith(), tpm, { tokens: 5 }, { tokens: 7 }, NOW_MS, NOW_MS);

    expect(update).toMatchObject({
      key: KEY,
      set: [{ attr: 'b_tpm', value: X + 2n * MINUTE }, { attr: 's_tpm' }, { attr: 'ttl' }],
      condition: {
        and: [{ or: [{ absent: 'b_tpm' }, {}] }, { or: [{ absent: 'ttl' }, {}] }, whole],
      },
    });
  });

  it('refunds only into the generation the lease was charged in', () => {
    const engine = engineWith(bucketState(X + 5n * MINUTE, '10/60/10'));

    const zero = deltaUpdate(engine, tpm, { tokens: 5 }, { tokens: 2 }, NOW_MS, NOW_MS);
    const second = deltaUpdate(
      engineWith({ ...bucketState(X + 5n * MINUTE, '10/60/10'), g: 2n }),
      item([bucket(10)], 2),
      { tokens: 5 },
      { tokens: 2 },
      NOW_MS,
      NOW_MS,
    );

    expect(zero).toEqual({
      key: KEY,
      set: [{ attr: 'b_tpm', add: -3n * MINUTE }],
      condition: { and: [scaleIs, { and: [generationZero, whole] }] },
    });
    expect(second).toMatchObject({
      condition: { and: [scaleIs, { and: [{ attr: 'g', op: '=', value: 2n }, whole] }] },
    });
  });

  it('returns only what the lease still holds after the bucket refilled', () => {
    const engine = engineWith(bucketState(X + 5n * MINUTE, '10/60/10'));
    const acquiredAtMs = NOW_MS - 12_000; // 2 units refilled since, at 10 a minute

    const update = deltaUpdate(engine, tpm, { tokens: 5 }, { tokens: 0 }, NOW_MS, acquiredAtMs);

    expect(update).toMatchObject({ set: [{ attr: 'b_tpm', add: -3n * MINUTE }] });
  });

  it('refunds nothing across a reset it remembers, and still charges debt', () => {
    const state = { ...bucketState(X + 5n * MINUTE, '10/60/10'), g: 3n };
    const both = item(
      [bucket(10), { ...bucket(100, 60, 100), name: 'rpm', metric: 'requests' }],
      2,
    );

    const refundOnly = deltaUpdate(
      engineWith(state),
      both,
      { tokens: 5 },
      { tokens: 0 },
      NOW_MS,
      NOW_MS,
    );
    const withDebt = deltaUpdate(
      engineWith(state),
      both,
      { tokens: 5, requests: 1 },
      { tokens: 0, requests: 2 },
      NOW_MS,
      NOW_MS,
    );

    expect(refundOnly).toBeNull();
    expect(withDebt).toMatchObject({
      set: [{ attr: 'b_rpm' }, { attr: 's_rpm' }, { attr: 'ttl' }],
    });
  });

  it('skips a refund to a bucket it remembers gone, as a check that it still is', () => {
    const update = deltaUpdate(
      engineWith({ g: 0n }),
      tpm,
      { tokens: 5 },
      { tokens: 0 },
      NOW_MS,
      NOW_MS,
    );

    expect(update).toEqual({ key: KEY, check: { absent: 'b_tpm' } });
  });

  it('skips a quota refund to a window the item no longer holds, as a check', () => {
    const daily = item([{ ...quota(1_000), windowStartMs: TODAY }]);
    const engine = engineWith(quotaState(TODAY - 86_400_000, 5n));

    const update = deltaUpdate(engine, daily, { tokens: 5 }, { tokens: 0 }, NOW_MS, NOW_MS);

    expect(update).toEqual({
      key: KEY,
      check: { or: [{ absent: 'w_daily' }, { attr: 'w_daily', op: '<', value: BigInt(TODAY) }] },
    });
  });

  it('joins what two skips assume into one check', () => {
    const both = item([bucket(10), { ...quota(1_000), windowStartMs: TODAY }]);
    const engine = engineWith({ g: 0n });

    const update = deltaUpdate(engine, both, { tokens: 5 }, { tokens: 0 }, NOW_MS, NOW_MS);

    expect(update).toEqual({
      key: KEY,
      check: {
        and: [
          { absent: 'b_tpm' },
          { or: [{ absent: 'w_daily' }, { attr: 'w_daily', op: '<', value: BigInt(TODAY) }] },
        ],
      },
    });
  });

  it('charges a shard at the share it holds now, with no TTL', () => {
    const shardKey = { pk: KEY.pk, sk: `${KEY.sk}#1` };
    const engine = engineWith({ ...bucketState(X + 4n * MINUTE, '10/60/10'), n: 2n }, shardKey);

    const update = deltaUpdate(
      engine,
      item([bucket(10)], 0, shardKey),
      { tokens: 2 },
      { tokens: 1 },
      NOW_MS,
      NOW_MS,
    );

    expect(update).toEqual({
      key: shardKey,
      set: [{ attr: 'b_tpm', add: -2n * MINUTE }], // a unit costs a shard of 2 two minutes
      condition: {
        and: [
          // A shard's refund takes what the shard still holds (the rest goes to other shards).
          { and: [scaleIs, { attr: 'b_tpm', op: '>=', value: X + 2n * MINUTE }] },
          { and: [generationZero, { attr: 'n', op: '=', value: 2n }] },
        ],
      },
    });
  });

  it('spills what a shard no longer holds, and nothing for less than a unit of it', () => {
    const shardKey = { pk: KEY.pk, sk: `${KEY.sk}#1` };
    const lease = item([bucket(10)], 0, shardKey);
    // The shard of 2 holds 1.5 of the 2 units the lease gives back (a unit costs it 2 minutes).
    const holding = (backlog: bigint) =>
      deltaUpdates(
        engineWith({ ...bucketState(X + backlog, '10/60/10'), n: 2n }, shardKey),
        lease,
        { tokens: 2 },
        { tokens: 0 },
        NOW_MS,
        NOW_MS,
        99,
      );

    const short = holding(3n * MINUTE); // 1.5 units: half a unit short, not spilled
    const shorter = holding(2n * MINUTE); // 1 unit: one unit short, to be found elsewhere

    expect(short.update).toMatchObject({ set: [{ attr: 'b_tpm', add: -3n * MINUTE }] });
    expect(short.spills).toEqual({ updates: [] });
    expect(shorter.update).toMatchObject({ set: [{ attr: 'b_tpm', add: -2n * MINUTE }] });
    // No other shard remembered: the scope is to be read for the rest.
    expect(shorter.spills).toEqual({ updates: [], unplaced: KEY });
  });

  it('adds what a skip assumes to a write’s condition', () => {
    const both = item([bucket(10), { ...quota(1_000), windowStartMs: TODAY }]);
    const engine = engineWith(bucketState(X + 5n * MINUTE, '10/60/10')); // no window: assumed

    const update = deltaUpdate(engine, both, { tokens: 5 }, { tokens: 0 }, NOW_MS, NOW_MS);

    expect(update).toEqual({
      key: KEY,
      set: [{ attr: 'b_tpm', add: -5n * MINUTE }],
      condition: {
        and: [
          { and: [scaleIs, { and: [generationZero, whole] }] },
          { or: [{ absent: 'w_daily' }, { attr: 'w_daily', op: '<', value: BigInt(TODAY) }] },
        ],
      },
    });
  });
});

describe('leasedItem', () => {
  it('remembers the generation, and each quota’s window as of now', () => {
    const check: ScopeCheck = { scope: 'entity', key: KEY, limits: [bucket(10), quota(1_000)] };

    const leased = leasedItem(check, { g: 4n }, NOW_MS);

    expect(leased).toEqual({
      key: KEY,
      scope: 'entity',
      generation: 4,
      limits: [bucket(10), { ...quota(1_000), windowStartMs: TODAY }],
    });
  });

  it('reads a missing generation as 0', () => {
    expect(generationOf({})).toBe(0);
  });
});

describe('applyLocally', () => {
  it('applies each kind of assignment as DynamoDB would, reading the item as it was', () => {
    const state: ItemState = { a: 1n, b: 10n, c: 'x', d: 5n };

    const next = applyLocally(state, [
      { attr: 'a', value: 2n },
      { attr: 'b', add: -3n },
      { attr: 'c', ifAbsent: 'y' },
      { attr: 'e', ifAbsent: 'z' },
      { attr: 'f', copyOf: 'a', orElse: 0n }, // a before this update
      { attr: 'g', copyOf: 'missing', orElse: 7n },
      { attr: 'd', base: 100n, addToExisting: 1n },
      { attr: 'h', base: 100n, addToExisting: 1n },
      { attr: 'i', add: 4n },
    ]);

    expect(next).toEqual({ a: 2n, b: 7n, c: 'x', d: 6n, e: 'z', f: 1n, g: 7n, h: 101n, i: 4n });
  });

  it('zeroes every metric of a usage', () => {
    expect(zeroed({ tokens: 5, requests: 1 })).toEqual({ tokens: 0, requests: 0 });
  });
});
