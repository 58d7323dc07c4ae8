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
 * The definition (`"L/periodSeconds/burst"`) is stored beside x, with the revision it was stored
 * at. When a limit changes, the first write under the newer revision converts the state under an
 * exact-match condition, keeping the backlog in units of usage: 700 tokens used of 1,000 a minute
 * are still 700 used of 2,000 a minute. While other processes may still hold the older
 * definition (their configuration caches), they adopt the item's instead of converting it back,
 * so old and new configuration converge; after that window every process holds the newest one
 * and converts to it (see {@link effectiveLimit}). An inline limit never adopts, and is never
 * adopted.
 *
 * Every write that can raise x says how far ahead of now its state can matter (`horizonNs`),
 * bounded by its own condition; the item's TTL is set past that. Refunds only lower x.
 *
 * What a plan comes to, a write, skip or deny, is a `Step` (step.ts, shared with quotas); time
 * is in nanoseconds as BigInt (nanos.ts).
 */

import { PRIORITY } from '../defaults.js';
import { own } from '../names.js';
import { bucketAttributes } from '../store/schema.js';
import type { ItemState } from '../store/types.js';
import type { BucketLimit } from './limits.js';
import { ceilDiv, floorDiv, NS_PER_MS, NS_PER_S } from './nanos.js';
import { quotaShare, unitsShare } from './shards.js';
import type { Step } from './step.js';

// Exported from here as well: the engine's modules import the time units and the plan type
// along with the bucket math.

/** How a consume may use a bucket. */
export interface ConsumeOptions {
  /** Share of the burst this request may fill, 1–100. */
  readonly priority: number;
  /** Extra backlog the request may queue behind (reservation), in ns; full priority only. */
  readonly maxWaitNs: bigint;
  /** Whether `state` is trusted enough to deny without writing (the cache may deny, never admit). */
  readonly mayDeny: boolean;
  /**
   * How long after a conversion processes holding an older stored definition adopt the new one:
   * at least the time a configuration change takes to reach every process. @default 60_000
   */
  readonly adoptForMs?: number;
}

/** Default of {@link ConsumeOptions.adoptForMs}: twice the default configuration cache time. */
const ADOPT_FOR_MS = 60_000;

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);

/** The parts of a bucket definition the math needs. */
type Definition = Pick<BucketLimit, 'limit' | 'periodSeconds' | 'burst' | 'share' | 'shardIndex'>;

/**
 * The cost of one unit of usage P (ns), the scale L, and the capacity tau at full priority. A
 * shard holding 1/`share` of the limit charges `share` times the period per unit: exactly
 * 1/`share` of the rate. Its tau holds whole units of the burst, the shard's share of it as a
 * quota's (the shards' add up to the burst): a fraction of a unit no shard could admit at once.
 */
export function bucketParams(limit: Definition): { L: bigint; P: bigint; tau: bigint } {
  const period = BigInt(limit.periodSeconds) * NS_PER_S;
  const share = limit.share ?? 1;
  const P = period * BigInt(share);
  const tau =
    share === 1
      ? BigInt(limit.burst) * period
      : BigInt(quotaShare(limit.burst, limit.shardIndex ?? 0, share)) * P;
  return { L: BigInt(limit.limit), P, tau };
}

/**
 * Capacity available to a request of `priority` (1–100): the last part is kept for higher ones.
 * A shard holds its part of the whole units the scope holds at that priority (as its tau holds
 * its part of the burst): the part of each shard's own whole units would lose up to a unit a
 * shard (10 over 8 shards at 90: 1 + 1 + 0 × 6 = 2, where the whole scope holds 9).
 */
export function effectiveCapacity(limit: Definition, priority: number): bigint {
  const { P, tau } = bucketParams(limit);
  const share = limit.share ?? 1;
  if (share === 1) return (tau * BigInt(priority)) / BigInt(PRIORITY.max); // P: multiple of 1e9
  const units = (BigInt(limit.burst) * BigInt(priority)) / BigInt(PRIORITY.max);
  return unitsShare(units, limit.shardIndex ?? 0, share) * P;
}

/** Whether `amount` can ever fit this limit at this priority. */
export function bucketFits(limit: BucketLimit, amount: number, priority: number): boolean {
  return BigInt(amount) * bucketParams(limit).P <= effectiveCapacity(limit, priority);
}

/** The definition a limit stores beside its TAT. */
export function scaleOf(limit: Definition): string {
  return `${limit.limit}/${limit.periodSeconds}/${limit.burst}`;
}

function parseScale(scale: string): Definition {
  const [l, p, b] = scale.split('/');
  const limit = Number(l ?? '1');
  return { limit, periodSeconds: Number(p ?? '1'), burst: b === undefined ? limit : Number(b) };
}

interface Stored {
  readonly x?: bigint;
  readonly s?: string;
  /** Revision of the stored definition; 0 when none was recorded. */
  readonly r: bigint;
  /** Until when older definitions adopt it (epoch ms); 0 when not recorded. */
  readonly c: bigint;
}

function readStored(state: ItemState | undefined, name: string): Stored {
  const x = own(state, bucketAttributes.tat(name));
  const s = own(state, bucketAttributes.scale(name));
  const r = own(state, bucketAttributes.revision(name));
  const c = own(state, bucketAttributes.adoptUntil(name));
  // Assigned, not spread: this runs for every limit of every decision, refusals from memory too.
  const stored: { x?: bigint; s?: string; r: bigint; c: bigint } = {
    r: typeof r === 'bigint' ? r : 0n,
    c: typeof c === 'bigint' ? c : 0n,
  };
  if (typeof x === 'bigint') stored.x = x;
  if (typeof s === 'string') stored.s = s;
  return stored;
}

const revisionOf = (limit: BucketLimit): bigint => BigInt(limit.revision ?? 0);

/**
 * The definition to decide with: the item's own when it was stored after the one this process
 * holds (its configuration cache is behind) and processes may still be behind, else the limit as
 * given. Revisions order stored definitions totally: the later document wins, and of two written
 * at the same revision the greater definition (as text), so processes holding either converge
 * on one. Once every process has read the change (the item's adoption window has passed), no
 * revision is trusted over the process's own configuration: a definition whose document was
 * deleted, or stamped by a clock that ran ahead, never sticks. An inline limit (no revision) is
 * the caller's own and is never replaced, and a stored one never takes an inline definition
 * (written at revision 0): each is judged by its own definition, the item converted exactly
 * between them (see {@link bucketConsume}).
 */
export function effectiveLimit(
  limit: BucketLimit,
  state: ItemState | undefined,
  nowNs: bigint,
): BucketLimit {
  const mine = revisionOf(limit);
  if (mine === 0n) return limit;
  const { s, r, c } = readStored(state, limit.name);
  if (s === undefined || r < mine || (r === mine && s <= scaleOf(limit))) return limit;
  if (c * NS_PER_MS <= nowNs) return limit;
  return { ...limit, ...parseScale(s), revision: Number(r) };
}

/**
 * The stored TAT as the definition `to` would store it, keeping the backlog in usage units (at
 * the same share: only a split changes an item's share, and it converts nothing).
 */
function convertTat(
  x: bigint,
  from: string,
  to: { L: bigint; P: bigint },
  nowNs: bigint,
  share: number | undefined,
): bigint {
  const old = bucketParams({ ...parseScale(from), share: share ?? 1 });
  if (old.L === to.L && old.P === to.P) return x;
  const backlog = max(0n, x - nowNs * old.L); // in old units: usage × old P
  return nowNs * to.L + ceilDiv(backlog * to.P, old.P);
}

function idleWrite(
  name: string,
  scale: string,
  nowX: bigint,
  add: bigint,
  horizonNs: bigint,
): Step {
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
    horizonNs,
  };
}

/**
 * Plans taking `amount` from a bucket. `state` undefined means nothing is known: guess idle.
 */
export function bucketConsume(
  given: BucketLimit,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: number,
  options: ConsumeOptions,
): Step {
  const limit = effectiveLimit(given, state, nowNs);
  const { L, P } = bucketParams(limit);
  const scale = scaleOf(limit);
  const nowX = nowNs * L;
  const inc = BigInt(amount) * P;
  const capacity = effectiveCapacity(limit, options.priority);
  // Only full priority may queue past its share: a lower one reserving a place beyond it would
  // take the headroom kept for higher priorities, who could then only queue behind it.
  const ceiling = capacity + (options.priority >= PRIORITY.max ? options.maxWaitNs * L : 0n);
  const horizonNs = ceilDiv(ceiling, L); // every branch leaves x <= now·L + ceiling
  // The idle branch's condition does not bound the increment: a write larger than the ceiling is
  // never planned, whatever is known of the item (a group's summed usage, a shard's share).
  if (inc > ceiling) return { kind: 'deny', retryAfterNs: ceilDiv(inc - capacity, L) };
  const { x, s } = readStored(state, limit.name);
  if (state === undefined || x === undefined || s === undefined)
    return idleWrite(limit.name, scale, nowX, inc, horizonNs);

  const newX = max(s === scale ? x : convertTat(x, s, { L, P }, nowNs, limit.share), nowX) + inc;
  if (newX - nowX > ceiling) {
    // A stale state may not deny; the idle guess admits only if the bucket really is idle.
    if (!options.mayDeny) return idleWrite(limit.name, scale, nowX, inc, horizonNs);
    return { kind: 'deny', retryAfterNs: ceilDiv(newX - nowX - capacity, L) };
  }
  const tat = bucketAttributes.tat(limit.name);
  const sc = bucketAttributes.scale(limit.name);
  if (s !== scale) {
    // Only here does the revision change, together with the definition, under the exact-match
    // condition on both: a stale view can never lower it.
    return {
      kind: 'write',
      set: [
        { attr: tat, value: newX },
        { attr: sc, value: scale },
        { attr: bucketAttributes.revision(limit.name), value: revisionOf(limit) },
        {
          attr: bucketAttributes.adoptUntil(limit.name),
          value: nowNs / NS_PER_MS + BigInt(options.adoptForMs ?? ADOPT_FOR_MS),
        },
      ],
      condition: {
        and: [
          { attr: tat, op: '=', value: x },
          { attr: sc, op: '=', value: s },
        ],
      },
      horizonNs,
      converts: true,
    };
  }
  if (x <= nowX) return idleWrite(limit.name, scale, nowX, inc, horizonNs);
  return {
    kind: 'write',
    set: [{ attr: tat, add: inc }],
    condition: {
      and: [
        { attr: sc, op: '=', value: scale },
        { attr: tat, op: '>=', value: nowX },
        { attr: tat, op: '<=', value: nowX + ceiling - inc },
      ],
    },
    horizonNs,
  };
}

/** A bucket as a lease remembers it. */
export interface LeasedBucket extends Definition {
  readonly name: string;
}

/**
 * The definition to charge a delta at: the stored one when known (the limit may have changed
 * since the lease was taken; usage units are the same under every definition), else the lease's.
 */
function deltaDefinition(
  leased: LeasedBucket,
  state: ItemState | undefined,
): { scale: string; L: bigint; P: bigint; tau: bigint } {
  const scale = readStored(state, leased.name).s ?? scaleOf(leased);
  const shard = { share: leased.share ?? 1, shardIndex: leased.shardIndex ?? 0 };
  return { scale, ...bucketParams({ ...parseScale(scale), ...shard }) };
}

/** Plans debt: adds `amount` with no capacity condition (the bucket may go past empty). */
export function bucketDebt(
  leased: LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  amount: bigint,
): Step {
  const { x } = readStored(state, leased.name);
  const { scale, L, P, tau } = deltaDefinition(leased, state);
  const nowX = nowNs * L;
  const add = amount * P;
  if (x === undefined || x <= nowX)
    return idleWrite(leased.name, scale, nowX, add, ceilDiv(add, L));
  // Bound x from above so the TTL provably covers the debt: a bucket's worth more than last seen.
  const upper = x + tau;
  const tat = bucketAttributes.tat(leased.name);
  return {
    kind: 'write',
    set: [{ attr: tat, add }],
    condition: {
      and: [
        { attr: bucketAttributes.scale(leased.name), op: '=', value: scale },
        { attr: tat, op: '>=', value: nowX },
        { attr: tat, op: '<=', value: upper },
      ],
    },
    horizonNs: ceilDiv(upper + add - nowX, L),
  };
}

/**
 * Plans a refund of up to `amount` units of a lease that holds `held` there and was acquired
 * `elapsedNs` ago: it returns only what the lease still holds, that is what it took less what
 * the bucket has refilled since the acquire (its units began to drain no earlier than that,
 * whatever else happened to the bucket), so it never returns a unit that has refilled. Exact in
 * the bucket's own units; the faster of the lease's and the stored definition counts the refill.
 *
 * Moves the TAT back; needs no branch: a TAT pushed into the past only means a full bucket, and
 * the idle branch ignores how far in the past it is. A bucket known to be gone gets nothing.
 */
export function bucketRefund(
  leased: LeasedBucket,
  state: ItemState | undefined,
  amount: bigint,
  held: { readonly amount: bigint; readonly elapsedNs: bigint },
): Step {
  if (state !== undefined && readStored(state, leased.name).x === undefined)
    return { kind: 'skip', assuming: { absent: bucketAttributes.tat(leased.name) } };
  const { scale, L, P } = deltaDefinition(leased, state);
  const lease = bucketParams(leased);
  const elapsed = max(0n, held.elapsedNs);
  const drained = max(elapsed * L, ceilDiv(elapsed * lease.L * P, lease.P));
  const refund = minBig(amount * P, held.amount * P - drained);
  if (refund <= 0n) return { kind: 'skip' };
  return {
    kind: 'write',
    set: [{ attr: bucketAttributes.tat(leased.name), add: -refund }],
    condition: { attr: bucketAttributes.scale(leased.name), op: '=', value: scale },
  };
}

/** Remaining units (negative in debt) and ns until the bucket is full again. */
export function bucketStatus(
  given: BucketLimit,
  state: ItemState | undefined,
  nowNs: bigint,
): { remaining: bigint; resetNs: bigint; backlogX: bigint } {
  const limit = effectiveLimit(given, state, nowNs);
  const { L, P, tau } = bucketParams(limit);
  const { x, s } = readStored(state, limit.name);
  if (x === undefined || s === undefined) return { remaining: tau / P, resetNs: 0n, backlogX: 0n }; // the burst (a shard's share of it)
  const same = s === scaleOf(limit);
  const backlogX = max(0n, (same ? x : convertTat(x, s, { L, P }, nowNs, limit.share)) - nowNs * L);
  return { remaining: floorDiv(tau - backlogX, P), resetNs: ceilDiv(backlogX, L), backlogX };
}

/** Time a request of `amount` waits after admission (reservation), in ns; 0 when it goes now. */
export function bucketWaitNs(
  given: BucketLimit,
  state: ItemState,
  nowNs: bigint,
  priority: number,
): bigint {
  const limit = effectiveLimit(given, state, nowNs);
  const { L } = bucketParams(limit);
  const { backlogX } = bucketStatus(limit, state, nowNs);
  const over = backlogX - effectiveCapacity(limit, priority);
  return over > 0n ? ceilDiv(over, L) : 0n;
}
