/**
 * How limits stand, as answers show them: the statuses of every limit, the violations of a
 * refusal, and the refusal itself.
 */

import type { ItemState } from '../store/types.js';
import { bucketStatus } from './gcra.js';
import { amountOf, type Limit, type Usage } from './limits.js';
import { quotaStatus } from './quota.js';
import { type Engine, nsToMs, toNs } from './state.js';
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
  engine: Engine,
  checks: readonly ScopeCheck[],
  nowMs: number,
): LimitStatus[] {
  return checks.flatMap((check) =>
    statuses(check.scope, check.limits, engine.stateOf(check.key), nowMs),
  );
}

/** A rate-limited refusal. */
export function denial(
  engine: Engine,
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
