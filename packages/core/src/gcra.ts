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
 * The scale (`"L/periodSeconds"`) is stored beside x. When a limit changes, the first write
 * converts the state under an exact-match condition, keeping the backlog in units of usage:
 * 700 tokens used of 1,000 a minute are still 700 used of 2,000 a minute.
 */

import type { BucketLimit } from './limits.js';
import { bucketAttributes } from './schema.js';
import type { Assignment, Condition, ItemState } from './store/types.js';

/** Nanoseconds per millisecond. */
export const NS_PER_MS = 1_000_000n;
/** Nanoseconds per second. */
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

/** Integer division rounding toward −∞ (BigInt division truncates toward 0); `b` > 0. */
export function floorDiv(a: bigint, b: bigint): bigint {
  return a >= 0n ? a / b : -((-a + b - 1n) / b);
}

/** Integer division rounding toward +∞; `b` > 0. */
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

/** The scale a limit stores its TAT at. */
export function scaleOf(limit: { readonly limit: number; readonly periodSeconds: number }): string {
  return `${limit.limit}/${limit.periodSeconds}`;
}

function parseScale(scale: string): { L: bigint; P: bigint } {
  const [l, p] = scale.split('/');
  return { L: BigInt(l ?? '1'), P: BigInt(p ?? '1') * NS_PER_S };
}

function readTat(state: ItemState | undefined, name: string): { x?: bigint; s?: string } {
  const x = state?.[bucketAttributes.tat(name)];
  const s = state?.[bucketAttributes.scale(name)];
  return {
    ...(typeof x === 'bigint' ? { x } : {}),
    ...(typeof s === 'string' ? { s } : {}),
  };
}

/** The stored TAT as the limit `to` would store it, keeping the backlog in usage units. */
function convertTat(x: bigint, from: string, to: { L: bigint; P: bigint }, nowNs: bigint): bigint {
  const old = parseScale(from);
  if (old.L === to.L && old.P === to.P) return x;
  const backlog = max(0n, x - nowNs * old.L); // in old units: usage × old P
  return nowNs * to.L + ceilDiv(backlog * to.P, old.P);
}

function idleWrite(name: string, scale: string, nowX: bigint, add: bigint): Plan {
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

function convertWrite(name: string, x: bigint, s: string, scale: string, newX: bigint): Plan {
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
  const scale = scaleOf(limit);
  const nowX = nowNs * L;
  const inc = BigInt(amount) * P;
  const capacity = effectiveCapacity(limit, options.priority);
  const ceiling = capacity + options.maxWaitNs * L;
  const { x, s } = readTat(state, limit.name);
  if (state === undefined || x === undefined || s === undefined)
    return idleWrite(limit.name, scale, nowX, inc);

  const newX = max(convertTat(x, s, { L, P }, nowNs), nowX) + inc;
  if (newX - nowX > ceiling) {
    // A stale state may not deny; the idle guess admits only if the bucket really is idle.
    if (!options.mayDeny) return idleWrite(limit.name, scale, nowX, inc);
    return { kind: 'deny', retryAfterNs: ceilDiv(newX - nowX - capacity, L) };
  }
  if (s !== scale) return convertWrite(limit.name, x, s, scale, newX);
  if (x <= nowX) return idleWrite(limit.name, scale, nowX, inc);
  const tat = bucketAttributes.tat(limit.name);
  return {
    kind: 'write',
    set: [{ attr: tat, add: inc }],
    condition: {
      and: [
        { attr: bucketAttributes.scale(limit.name), op: '=', value: scale },
        { attr: tat, op: '>=', value: nowX },
        { attr: tat, op: '<=', value: nowX + ceiling - inc },
      ],
    },
  };
}

/** A bucket as a lease remembers it. */
export interface LeasedBucket {
  readonly name: string;
  readonly limit: number;
  readonly periodSeconds: number;
}

/**
 * The scale to charge a delta at: the stored one when known (the limit may have changed since
 * the lease was taken; usage units are the same under every scale), else the lease's.
 */
function deltaScale(
  leased: LeasedBucket,
  state: ItemState | undefined,
): { scale: string; L: bigint; P: bigint } {
  const scale = readTat(state, leased.name).s ?? scaleOf(leased);
  return { scale, ...parseScale(scale) };
}

/** Plans debt: adds `amount` with no capacity condition (the bucket may go past empty). */
export function planBucketDebt(
  leased: LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: bigint,
): Plan {
  const { x } = readTat(state, leased.name);
  const { scale, L, P } = deltaScale(leased, state);
  const nowX = nowNs * L;
  const add = amount * P;
  if (x === undefined || x <= nowX) return idleWrite(leased.name, scale, nowX, add);
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
  const { scale, L, P } = deltaScale(leased, state);
  const sc = bucketAttributes.scale(leased.name);
  return {
    kind: 'write',
    set: [
      { attr: bucketAttributes.tat(leased.name), base: nowNs * L, addToExisting: -amount * P },
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
  const backlogX = max(0n, convertTat(x, s, { L, P }, nowNs) - nowNs * L);
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
