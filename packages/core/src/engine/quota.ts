/**
 * Calendar quotas as conditional updates: `w` holds the start (epoch ms) of the window that
 * `u` counts in.
 *
 * New window:   SET w = :w, u = :n      IF w absent OR w < :w
 * Same window:  SET u = u + :n          IF w = :w AND u <= :limit − :n
 *
 * `w < :w` (not `<>`) so that a process whose clock runs behind never resets a window that a
 * process ahead of it already opened: it joins that window instead.
 */

import { own } from '../names.js';
import { bucketAttributes } from '../store/schema.js';
import type { ItemState } from '../store/types.js';
import { type CalendarUnit, calendarWindow } from './calendar.js';
import type { QuotaLimit } from './limits.js';
import { unitsShare } from './shards.js';
import type { Step } from './step.js';

/** A quota as a lease remembers it. */
export interface LeasedQuota {
  readonly name: string;
  readonly window: CalendarUnit;
  readonly timezone: string;
  /** Start of the window the lease was charged in (epoch ms). */
  readonly windowStartMs: number;
}

interface Current {
  readonly start: bigint;
  readonly endMs: number;
  readonly stored?: bigint;
  readonly used: bigint;
}

function current(
  quota: { name: string; window: CalendarUnit; timezone: string },
  state: ItemState | undefined,
  nowMs: number,
): Current {
  const win = calendarWindow(nowMs, quota.window, quota.timezone);
  const stored = own(state, bucketAttributes.window(quota.name));
  const used = own(state, bucketAttributes.used(quota.name));
  let start = BigInt(win.startMs);
  let endMs = win.endMs;
  if (typeof stored === 'bigint' && stored > start) {
    // Another process's clock is already in the next window: join it.
    start = stored;
    endMs = calendarWindow(Number(stored), quota.window, quota.timezone).endMs;
  }
  return {
    start,
    endMs,
    ...(typeof stored === 'bigint' ? { stored } : {}),
    used: stored === start && typeof used === 'bigint' ? used : 0n,
  };
}

/** A window's state matters until it ends. */
const horizonOf = (cur: Current, nowMs: number): bigint =>
  BigInt(Math.max(0, Math.ceil(cur.endMs - nowMs))) * 1_000_000n;

function newWindow(name: string, cur: Current, amount: bigint, nowMs: number): Step {
  const w = bucketAttributes.window(name);
  return {
    kind: 'write',
    set: [
      { attr: w, value: cur.start },
      { attr: bucketAttributes.used(name), value: amount },
    ],
    condition: { or: [{ absent: w }, { attr: w, op: '<', value: cur.start }] },
    horizonNs: horizonOf(cur, nowMs),
  };
}

/** Whether `amount` can ever fit this quota at this priority. */
export function quotaFits(limit: QuotaLimit, amount: number, priority: number): boolean {
  return BigInt(amount) <= quotaCapacity(limit, priority);
}

/**
 * What `priority` may use of a quota. A shard's is its part of what the whole quota allows that
 * priority (as its share is its part of the whole): its part of its own share would lose up to a
 * unit a shard (10 a day over 8 shards at 90: 1 + 1 + 0 × 6, where the whole allows 9).
 */
function quotaCapacity(limit: QuotaLimit, priority: number): bigint {
  const whole = limit.shardOf;
  if (!whole) return (BigInt(limit.limit) * BigInt(priority)) / 100n;
  const units = (BigInt(whole.limit) * BigInt(priority)) / 100n;
  return unitsShare(units, whole.index, whole.count);
}

/** Plans taking `amount` from a quota; unknown state guesses a new window. */
export function quotaConsume(
  limit: QuotaLimit,
  state: ItemState | undefined,
  nowMs: number,
  amount: number,
  options: { readonly priority: number; readonly mayDeny: boolean },
): Step {
  const n = BigInt(amount);
  const cur = current(limit, state, nowMs);
  const capacity = quotaCapacity(limit, options.priority);
  // A new window's condition does not bound the amount: one larger than the quota is never
  // planned, whatever is known of the item (a group's summed usage, a shard's share).
  if (n > capacity)
    return { kind: 'deny', retryAfterNs: BigInt(Math.max(0, cur.endMs - nowMs)) * 1_000_000n };
  if (state === undefined || cur.stored !== cur.start) return newWindow(limit.name, cur, n, nowMs);
  if (cur.used + n > capacity && options.mayDeny) {
    return { kind: 'deny', retryAfterNs: BigInt(Math.max(0, cur.endMs - nowMs)) * 1_000_000n };
  }
  const w = bucketAttributes.window(limit.name);
  const u = bucketAttributes.used(limit.name);
  return {
    kind: 'write',
    set: [{ attr: u, add: n }],
    condition: {
      and: [
        { attr: w, op: '=', value: cur.start },
        { attr: u, op: '<=', value: capacity - n },
      ],
    },
    horizonNs: horizonOf(cur, nowMs),
  };
}

/** Plans debt: charged to the current window, with no cap (money spent is never forgiven). */
export function quotaDebt(
  leased: LeasedQuota,
  state: ItemState | undefined,
  nowMs: number,
  amount: bigint,
): Step {
  const cur = current(leased, state, nowMs);
  const sameWindow =
    state === undefined ? cur.start === BigInt(leased.windowStartMs) : cur.stored === cur.start;
  if (!sameWindow) return newWindow(leased.name, cur, amount, nowMs);
  return {
    kind: 'write',
    set: [{ attr: bucketAttributes.used(leased.name), add: amount }],
    condition: { attr: bucketAttributes.window(leased.name), op: '=', value: cur.start },
    horizonNs: horizonOf(cur, nowMs),
  };
}

/**
 * Plans a refund: only into the lease's own window while it is still the current one (and, by
 * the caller's generation check, not across a reset), so it only ever takes back what the lease
 * itself put into this `used`: it never goes below zero.
 */
export function quotaRefund(
  leased: LeasedQuota,
  state: ItemState | undefined,
  nowMs: number,
  amount: bigint,
): Step {
  const leaseStart = BigInt(leased.windowStartMs);
  const cur = current(leased, state, nowMs);
  // The window has moved on (by the clock, or by a later window already stored): nothing to free.
  if (cur.start !== leaseStart) return { kind: 'skip' };
  // The remembered item holds another window (an older one, or none): true unless it is stale.
  if (state !== undefined && cur.stored !== leaseStart) {
    const attr = bucketAttributes.window(leased.name);
    return {
      kind: 'skip',
      assuming: { or: [{ absent: attr }, { attr, op: '<', value: leaseStart }] },
    };
  }
  return {
    kind: 'write',
    set: [{ attr: bucketAttributes.used(leased.name), add: -amount }],
    condition: { attr: bucketAttributes.window(leased.name), op: '=', value: leaseStart },
  };
}

/** Remaining in the current window and ms until it ends. */
export function quotaStatus(
  limit: QuotaLimit,
  state: ItemState | undefined,
  nowMs: number,
): { remaining: bigint; resetMs: number; windowStartMs: number } {
  const cur = current(limit, state, nowMs);
  return {
    remaining: BigInt(limit.limit) - cur.used,
    resetMs: Math.max(0, cur.endMs - nowMs),
    windowStartMs: Number(cur.start),
  };
}
