/**
 * How limits stand, as answers show them: the statuses of every limit, the violations of a
 * refusal, and the refusal itself.
 */

import { shardKey } from '../store/schema.js';
import type { ItemKey, ItemState } from '../store/types.js';
import { bucketStatus } from './gcra.js';
import { amountOf, type Limit, type Usage } from './limits.js';
import { quotaStatus } from './quota.js';
import { countOf, quotaShare, seenBorn, shareOf } from './shards.js';
import { type EngineState, nsToMs, toNs } from './state.js';
import type { AcquireResult, LimitStatus, ScopeCheck, Violation } from './types.js';

/** The status of each enforced limit of one scope, from an item's state (shadow limits are not shown). */
export function statuses(
  scope: string,
  limits: readonly Limit[],
  state: ItemState | undefined,
  nowMs: number,
): LimitStatus[] {
  return limits.flatMap((limit) => {
    if (limit.shadow) return [];
    const { remaining, resetMs } = standing(limit, state, nowMs);
    return {
      scope,
      name: limit.name,
      metric: limit.metric,
      limit: limit.limit,
      remaining: Number(remaining),
      resetMs,
    };
  });
}

/** What remains of one limit (negative in debt) and in how many ms it is whole again. */
function standing(
  limit: Limit,
  state: ItemState | undefined,
  nowMs: number,
): { remaining: bigint; resetMs: number } {
  if (limit.kind === 'quota') return quotaStatus(limit, state, nowMs);
  const status = bucketStatus(limit, state, toNs(nowMs));
  return { remaining: status.remaining, resetMs: nsToMs(status.resetNs) };
}

/** A limit that refused `usage`. */
export function violation(
  check: ScopeCheck,
  limit: Limit,
  state: ItemState | undefined,
  nowMs: number,
  usage: Usage,
  retryAfterMs: number | null,
): Violation {
  return {
    scope: check.scope,
    name: limit.name,
    metric: limit.metric,
    limit: limit.limit,
    remaining: Number(standing(limit, state, nowMs).remaining),
    requested: amountOf(usage, limit.metric),
    retryAfterMs,
  };
}

/** Statuses of every limit as this process last saw them. */
export function remembered(
  engine: EngineState,
  checks: readonly ScopeCheck[],
  nowMs: number,
): LimitStatus[] {
  return checks.flatMap((check) => scopeStatuses(engine, check, nowMs));
}

/**
 * The statuses of a scope's whole limits (`check.key` is the scope's own item). A sharded
 * scope's `remaining` adds up its shards as this process last saw them (`fresh`: one just
 * written), extrapolated over shards it has not seen by their shares; `resetMs` is the latest.
 */
export function scopeStatuses(
  engine: EngineState,
  check: Pick<ScopeCheck, 'scope' | 'key' | 'limits'>,
  nowMs: number,
  fresh?: { readonly key: ItemKey; readonly state: ItemState },
): LimitStatus[] {
  const stateOf = (key: ItemKey) =>
    fresh && fresh.key.sk === key.sk && fresh.key.pk === key.pk ? fresh.state : engine.stateOf(key);
  const count = engine.shardCount(check.key);
  if (count === 1) return statuses(check.scope, check.limits, stateOf(check.key), nowMs);
  const seen = Array.from({ length: count }, (_, index) => ({
    index,
    state: stateOf(shardKey(check.key, index)),
  })).filter(({ index, state }) => seenBorn(index, state));
  if (seen.length === 0) return statuses(check.scope, check.limits, undefined, nowMs);
  const covered = seen.reduce((sum, { state }) => sum + 1 / countOf(state), 0);
  return check.limits.flatMap((limit) => {
    if (limit.shadow) return [];
    // The shards' shares are whole units, uneven (the first ones one more): the seen shards
    // stand for the part of the limit they hold, not for 1/count each.
    const whole = limit.kind === 'bucket' ? limit.burst : limit.limit;
    let remaining = 0;
    let held = 0;
    let resetMs = 0;
    for (const { index, state } of seen) {
      const [share] = shareOf([limit], index, countOf(state));
      const standingOf = standing(share ?? limit, state, nowMs);
      remaining += Number(standingOf.remaining);
      held += quotaShare(whole, index, countOf(state));
      resetMs = Math.max(resetMs, standingOf.resetMs);
    }
    return {
      scope: check.scope,
      name: limit.name,
      metric: limit.metric,
      limit: limit.limit,
      remaining: Math.floor(held > 0 ? (remaining * whole) / held : remaining / covered),
      resetMs,
    };
  });
}

/** A rate-limited refusal. */
export function denial(
  engine: EngineState,
  checks: readonly ScopeCheck[],
  violations: Violation[],
  nowMs: number,
): AcquireResult {
  // No violation means every attempt lost a race on the branch guess: try again at once.
  const retryAfterMs = violations.reduce(
    (most, v) => Math.max(most, v.retryAfterMs ?? 0),
    violations.length ? 0 : 1,
  );
  return {
    allowed: false,
    code: 'rate_limited',
    retryAfterMs,
    violations,
    limits: remembered(engine, checks, nowMs),
  };
}
