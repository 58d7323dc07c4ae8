/**
 * What the sharded-scope tests share: a resource-wide scope, an acquire and a lease taken as a
 * client takes them, what a scope has left as a fresh process reads it, and a limiter of its own.
 */
import { itemKeys, Limiter, type LimiterOptions, parseLimits, type ScopeCheck } from '@sluice/core';
import { available } from '@sluice/core/internal';
import { asClient, type TestTable } from './table.js';

/** A lease of `tokens` on `checks` (sent again after a 503); throws when refused. */
export async function leaseOf(limiter: Limiter, checks: ScopeCheck[], tokens: number) {
  const r = await asClient(() => limiter.acquire({ checks, usage: { tokens } }));
  if (!r.allowed) throw new Error(`refused: ${JSON.stringify(r)}`);
  return r.leaseId;
}

/** What each enforced limit of `check` has left, as a process that has seen nothing reads it. */
export async function remainingOf(table: TestTable, clock: () => number, check: ScopeCheck) {
  const left = await available(table.limiter({ clock }).engine, { checks: [check] });
  return Object.fromEntries(left.limits.map((l) => [l.name, l.remaining]));
}

/** A limiter (a process of its own) on `store`. */
export const limiterOn = (store: LimiterOptions['store'], clock: () => number) =>
  new Limiter({ store, clock });

/** The resource-wide scope of `resource` with `limits` (as stored: parsed). */
export const resourceScope = (resource: string, limits: unknown): ScopeCheck => ({
  scope: 'resource',
  key: itemKeys.resourceBucket(resource),
  limits: parseLimits(limits),
});

/**
 * An acquire as a client makes it: sent again after a 503 (contention outlasted its attempts;
 * it wrote nothing, or gave back all it took). The lease, or undefined when refused.
 */
export const decide = async (limiter: Limiter, check: ScopeCheck, tokens: number) => {
  const r = await asClient(() => limiter.acquire({ checks: [check], usage: { tokens } }));
  return r.allowed ? r : undefined;
};
