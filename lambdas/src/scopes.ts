/**
 * Which items and limits a request touches: stored configuration (entity → plan + overrides →
 * ancestors → resource-wide limits) plus the inline limits a request may add, resolved through
 * the container's configuration cache.
 */
import type { Limit, LimitInput, Usage } from '@sluice/core';
import { authorizeCaller, joinKey, type Policy, resolvePolicy } from '@sluice/core/internal';
import { getRuntime } from './runtime.js';

/** Resolves an acquire or available request into the engine's scopes, priority and price. */
export function resolve(request: {
  readonly entity: string;
  readonly resource: string;
  readonly usage?: Usage | undefined;
  readonly limits?: readonly LimitInput[] | undefined;
  readonly priority?: number | undefined;
  readonly batch?: boolean | undefined;
  readonly principal?: string | undefined;
}): Promise<Policy> {
  return resolvePolicy(getRuntime().policies, {
    entity: request.entity,
    resource: request.resource,
    usage: request.usage ?? {},
    ...(request.limits ? { inline: request.limits } : {}),
    ...(request.priority !== undefined ? { priority: request.priority } : {}),
    ...(request.batch ? { batch: true } : {}),
    principal: request.principal,
  });
}

/** Limit definitions by scope and name, for the headers. */
export function definitionsOf(checks: Policy['checks']): Map<string, Limit> {
  return new Map(
    checks.flatMap((c) => c.limits.map((l) => [joinKey(c.scope, l.name), l] as const)),
  );
}

/**
 * The check of the routes that act for an entity without resolving a policy (adjust and release
 * for the lease's entity, usage history): the `callers` of the entity and its ancestors, as they
 * are now, must name `principal`. `ancestors` (a lease's, as they were) are read alongside the
 * entity instead of one level after another; the walk still follows the hierarchy as it is.
 */
export const callerCheck =
  (principal: string | undefined) =>
  (entity: string, ancestors: readonly string[] = []): Promise<void> => {
    const { policies } = getRuntime();
    for (const id of ancestors) policies.entity(id).catch(() => {}); // the walk reports failures
    return authorizeCaller(policies, entity, principal);
  };
