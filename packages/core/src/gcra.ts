/**
 * GCRA token buckets as conditional updates.
 *
 * A bucket of `limit` L per period P (ns) holding `burst` B stores its theoretical arrival time
 * (TAT) scaled by L: `x = TAT_ns * L`. In those units one unit of usage costs exactly `P` and the
 * capacity is exactly `tau = B * P`, so every increment is an exact integer and no rounding ever
 * creeps in (at 3 per second, one request is 333,333,333.3 ns: any fixed unit would round).
 *
 *   allowed(n)  iff  max(x, now·L) + n·P − now·L <= tau
 *   new x       =    max(x, now·L) + n·P
 *
 * Idle (x <= now·L):  SET x = now·L + n·P   IF x absent OR (scale = L AND x <= now·L)
 * Busy (x >  now·L):  SET x = x + n·P       IF scale = L AND now·L <= x <= now·L + tau − n·P
 * Busy increments commute, so concurrent writers on a busy bucket never conflict.
 *
 * The scale is stored beside x. When a limit changes, the first write converts the stored TAT
 * to the new scale under an exact-match condition, so bucket state survives limit changes.
 */

import type { BucketLimit } from './limits.js';
import { bucketAttributes } from './schema.js';
import type { Assignment, Condition, ItemState } from './store/types.js';

export const NS_PER_MS = 1_000_000n;
export const NS_PER_S = 1_000_000_000n;

/** What to do about one limit of one item. */
export type Plan =
  | { readonly kind: 'write'; readonly set: readonly Assignment[]; readonly condition?: Condition }
  | { readonly kind: 'skip' }
  | { readonly kind: 'deny'; readonly retryAfterNs: bigint };

/** How a consume may use a bucket. */
export interface ConsumeOptions {
  /** Share of the burst this request may fill, 1–100. */
  readonly priority: number;
  /** Extra backlog the request may queue behind (reservation), in ns. */
  readonly maxWaitNs: bigint;
  /** Whether `state` is trusted enough to deny without writing (the cache may deny, never admit). */
  readonly mayDeny: boolean;
}

export function floorDiv(a: bigint, b: bigint): bigint {
  return a >= 0n ? a / b : -((-a + b - 1n) / b);
}

export function ceilDiv(a: bigint, b: bigint): bigint {
  return -floorDiv(-a, b);
}

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/** Period in ns, the scale L, and the capacity tau at full priority. */
export function bucketParams(limit: BucketLimit): { L: bigint; P: bigint; tau: bigint } {
  const P = BigInt(limit.periodSeconds) * NS_PER_S;
  return { L: BigInt(limit.limit), P, tau: BigInt(limit.burst) * P };
}

/** Capacity available to a request of `priority` (1–100): the last part is kept for higher ones. */
export function effectiveCapacity(limit: BucketLimit, priority: number): bigint {
  const { tau } = bucketParams(limit);
  return (tau * BigInt(priority)) / 100n; // P is a multiple of 1e9: exact
}

/** Whether `amount` can ever fit this limit at this priority. */
export function bucketFits(limit: BucketLimit, amount: number, priority: number): boolean {
  return BigInt(amount) * bucketParams(limit).P <= effectiveCapacity(limit, priority);
}

function readTat(state: ItemState | undefined, name: string): { x?: bigint; s?: bigint } {
  const x = state?.[bucketAttributes.tat(name)];
  const s = state?.[bucketAttributes.scale(name)];
  return {
    ...(typeof x === 'bigint' ? { x } : {}),
    ...(typeof s === 'bigint' ? { s } : {}),
  };
}

function idleWrite(name: string, scale: bigint, nowX: bigint, add: bigint): Plan {
  const tat = bucketAttributes.tat(name);
  const sc = bucketAttributes.scale(name);
  return {
    kind: 'write',
    set: [
      { attr: tat, value: nowX + add },
      { attr: sc, value: scale },
    ],
    condition: {
      or: [
        { absent: tat },
        {
          and: [
            { attr: sc, op: '=', value: scale },
            { attr: tat, op: '<=', value: nowX },
          ],
        },
      ],
    },
  };
}

function convertWrite(name: string, x: bigint, s: bigint, scale: bigint, newX: bigint): Plan {
  const tat = bucketAttributes.tat(name);
  const sc = bucketAttributes.scale(name);
  return {
    kind: 'write',
    set: [
      { attr: tat, value: newX },
      { attr: sc, value: scale },
    ],
    condition: {
      and: [
        { attr: tat, op: '=', value: x },
        { attr: sc, op: '=', value: s },
      ],
    },
  };
}

/** The stored TAT re-expressed at `scale` (rounded up: conversion never frees capacity). */
function tatAtScale(x: bigint, s: bigint, scale: bigint): bigint {
  return s === scale ? x : ceilDiv(x, s) * scale;
}

/**
 * Plans taking `amount` from a bucket. `state` undefined means nothing is known: guess idle.
 */
export function planBucketConsume(
  limit: BucketLimit,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: number,
  options: ConsumeOptions,
): Plan {
  const { L, P } = bucketParams(limit);
  const nowX = nowNs * L;
  const inc = BigInt(amount) * P;
  const capacity = effectiveCapacity(limit, options.priority);
  const ceiling = capacity + options.maxWaitNs * L;
  const { x, s } = readTat(state, limit.name);
  if (state === undefined || x === undefined || s === undefined)
    return idleWrite(limit.name, L, nowX, inc);

  const newX = max(tatAtScale(x, s, L), nowX) + inc;
  if (newX - nowX > ceiling) {
    // A stale state may not deny; the idle guess admits only if the bucket really is idle.
    if (!options.mayDeny) return idleWrite(limit.name, L, nowX, inc);
    return { kind: 'deny', retryAfterNs: ceilDiv(newX - nowX - capacity, L) };
  }
  if (s !== L) return convertWrite(limit.name, x, s, L, newX);
  if (x <= nowX) return idleWrite(limit.name, L, nowX, inc);
  const tat = bucketAttributes.tat(limit.name);
  return {
    kind: 'write',
    set: [{ attr: tat, add: inc }],
    condition: {
      and: [
        { attr: bucketAttributes.scale(limit.name), op: '=', value: L },
        { attr: tat, op: '>=', value: nowX },
        { attr: tat, op: '<=', value: nowX + ceiling - inc },
      ],
    },
  };
}

/** A bucket as a lease remembers it: enough to convert usage into TAT units later. */
export interface LeasedBucket {
  readonly name: string;
  /** Limit (scale) at acquire time. */
  readonly limit: number;
  readonly periodSeconds: number;
}

function amountAtScale(
  leased: LeasedBucket,
  amount: bigint,
  scale: bigint,
  roundUp: boolean,
): bigint {
  const P = BigInt(leased.periodSeconds) * NS_PER_S;
  const L = BigInt(leased.limit);
  if (scale === L) return amount * P;
  return roundUp ? ceilDiv(amount * P * scale, L) : floorDiv(amount * P * scale, L);
}

/** Plans debt: adds `amount` with no capacity condition (the bucket may go past empty). */
export function planBucketDebt(
  leased: LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: bigint,
): Plan {
  const { x, s } = readTat(state, leased.name);
  const scale = s ?? BigInt(leased.limit);
  const nowX = nowNs * scale;
  const add = amountAtScale(leased, amount, scale, true);
  if (x === undefined || s === undefined || x <= nowX)
    return idleWrite(leased.name, scale, nowX, add);
  const tat = bucketAttributes.tat(leased.name);
  return {
    kind: 'write',
    set: [{ attr: tat, add }],
    condition: {
      and: [
        { attr: bucketAttributes.scale(leased.name), op: '=', value: scale },
        { attr: tat, op: '>=', value: nowX },
      ],
    },
  };
}

/**
 * Plans a refund: moves the TAT back by `amount`. Needs no branch: a TAT pushed into the past
 * only means a full bucket, and the idle branch ignores how far in the past it is.
 */
export function planBucketRefund(
  leased: LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: bigint,
): Plan {
  const { s } = readTat(state, leased.name);
  const scale = s ?? BigInt(leased.limit);
  const sc = bucketAttributes.scale(leased.name);
  return {
    kind: 'write',
    set: [
      {
        attr: bucketAttributes.tat(leased.name),
        base: nowNs * scale,
        addToExisting: -amountAtScale(leased, amount, scale, false),
      },
      { attr: sc, value: scale },
    ],
    condition: { or: [{ absent: sc }, { attr: sc, op: '=', value: scale }] },
  };
}

/** Remaining units (negative in debt) and ns until the bucket is full again. */
export function bucketStatus(
  limit: BucketLimit,
  state: ItemState | undefined,
  nowNs: bigint,
): { remaining: bigint; resetNs: bigint; backlogX: bigint } {
  const { L, P, tau } = bucketParams(limit);
  const { x, s } = readTat(state, limit.name);
  if (x === undefined || s === undefined)
    return { remaining: BigInt(limit.burst), resetNs: 0n, backlogX: 0n };
  const backlogX = max(0n, tatAtScale(x, s, L) - nowNs * L);
  return { remaining: floorDiv(tau - backlogX, P), resetNs: ceilDiv(backlogX, L), backlogX };
}

/** Time a request of `amount` waits after admission (reservation), in ns; 0 when it goes now. */
export function bucketWaitNs(
  limit: BucketLimit,
  state: ItemState,
  nowNs: bigint,
  priority: number,
): bigint {
  const { L } = bucketParams(limit);
  const { backlogX } = bucketStatus(limit, state, nowNs);
  const over = backlogX - effectiveCapacity(limit, priority);
  return over > 0n ? ceilDiv(over, L) : 0n;
}
