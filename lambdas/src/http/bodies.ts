/**
 * Engine results in wire form: the engine's camelCase fields as HTTP API v1 names them (snake_case).
 */
import type { LimitStatus, SettleResult, Violation } from '@sluice/core';

/** Limit statuses in wire form. */
export const limitsBody = (limits: readonly LimitStatus[]) =>
  limits.map((l) => ({
    scope: l.scope,
    name: l.name,
    metric: l.metric,
    limit: l.limit,
    remaining: l.remaining,
    reset_ms: l.resetMs,
  }));

/** Violations in wire form. */
export const violationsBody = (violations: readonly Violation[]) =>
  violations.map((v) => ({
    scope: v.scope,
    name: v.name,
    metric: v.metric,
    limit: v.limit,
    remaining: v.remaining,
    requested: v.requested,
    retry_after_ms: v.retryAfterMs,
  }));

/** The answer of adjust and release. */
export const settleBody = (leaseId: string, result: SettleResult) => ({
  lease_id: leaseId,
  settled: result.settled,
  usage: result.usage,
  limits: limitsBody(result.limits),
});

/** How a refusal is named in usage history: `name` for the entity's own limits, else `scope.name`. */
export const refusalName = (v: Pick<Violation, 'scope' | 'name'>): string =>
  v.scope === 'entity' ? v.name : `${v.scope}.${v.name}`;

/** `shadow_violations`, when any shadow limit applied to the request. */
export const shadowBody = (shadow: readonly Violation[] | undefined) =>
  shadow ? { shadow_violations: violationsBody(shadow) } : {};
