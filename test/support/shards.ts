/**
 * What the sharded-scope tests share: a lease taken as a client takes it, what a scope has left
 * as a fresh process reads it, and a point where a test holds a store call while it acts.
 */
import { Limiter, type LimiterOptions, type ScopeCheck } from '@sluice/core';
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
