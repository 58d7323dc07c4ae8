/**
 * Which items and limits a request touches. Today: the entity's own bucket for the resource,
 * with the limits sent inline. Stored plans, parents and resource-wide limits add scopes here.
 */
import { itemKeys, type Limit, type LimitInput, parseLimits, type ScopeCheck } from '@sluice/core';

/** The scope items and limits an acquire or available touches (none without limits). */
export function resolveChecks(
  entity: string,
  resource: string,
  inline: readonly LimitInput[] | undefined,
): ScopeCheck[] {
  const limits = parseLimits(inline ?? [], 'limits');
  if (limits.length === 0) return [];
  return [{ scope: 'entity', key: itemKeys.entityBucket(entity, resource), limits }];
}

/** Limit definitions by scope and name, for the headers. */
export function definitionsOf(checks: readonly ScopeCheck[]): Map<string, Limit> {
  return new Map(
    checks.flatMap((c) => c.limits.map((l) => [`${c.scope}\u0000${l.name}`, l] as const)),
  );
}
