/**
 * One scope item of a decision: what taking the usage from its limits would do (a write, a
 * refusal, or nothing), and where a sharded scope's share of them lives.
 *
 * Shadow limits are judged beside the enforced ones but never act on the caller: one that would
 * refuse is left uncharged and reported; it never refuses, never makes the caller wait (it is
 * judged as a call that does not wait) and never reorders callers (it adds nothing to the wait
 * the answer reports). Its would-be refusals are reported whatever the enforced limits decide.
 */

import { PRIORITY } from '../defaults.js';
import { own } from '../names.js';
import { bucketAttributes, shardKey } from '../store/schema.js';
import type { Assignment, ItemState, ItemUpdate } from '../store/types.js';
import { bucketConsume, bucketFits, type ConsumeOptions } from './gcra.js';
import { combine } from './items.js';
import { amountOf, type Limit, type Usage } from './limits.js';
import { quotaConsume, quotaFits } from './quota.js';
import { shardCondition, shardingOf, shardsAt, shareOf } from './shards.js';
import { type EngineState, nsToMs, toNs } from './state.js';
import { scopeStatuses, violation } from './statuses.js';
import type { Step } from './step.js';
import type { ScopeCheck, Violation } from './types.js';

/** What one item's step comes to; `shadow` lists the shadow limits that would have refused. */
export type ItemStep =
  | { readonly kind: 'deny'; readonly violations: Violation[]; readonly shadow: Violation[] }
  | {
      readonly kind: 'write';
      readonly update: ItemUpdate;
      /** It converts a limit to a newer definition (an exact-match write). */
      readonly converts: boolean;
      readonly shadow: Violation[];
    }
  | { readonly kind: 'none'; readonly shadow: Violation[] };

/** The request's priority on a scope: lowered there by the scope's own (a plan's share). */
export const priorityAt = (check: ScopeCheck, priority: number) =>
  Math.min(priority, check.priority ?? PRIORITY.max);

/** Whether `amount` can ever fit `limit` at `priority`. */
export const fits = (limit: Limit, amount: number, priority: number): boolean =>
  limit.kind === 'bucket'
    ? bucketFits(limit, amount, priority)
    : quotaFits(limit, amount, priority);

/** A check without the shadow limits that would have refused (and so were not charged). */
export const charged = (check: ScopeCheck, shadow: readonly Violation[]): ScopeCheck =>
  shadow.length === 0
    ? check
    : { ...check, limits: check.limits.filter((l) => !shadow.some((v) => v.name === l.name)) };

/**
 * What taking `usage` from one item's limits would do. `also` is written with the item (the
 * usage event, a shard's write counter); a quota with budget alerts records its definition
 * beside its window for the usage aggregator.
 */
export function itemConsume(
  engine: EngineState,
  check: ScopeCheck,
  state: ItemState | undefined,
  nowMs: number,
  usage: Usage,
  options: ConsumeOptions,
  shards: number,
  also: () => readonly Assignment[],
): ItemStep {
  const at = { ...options, priority: priorityAt(check, options.priority) };
  const violations: Violation[] = [];
  const shadow: Violation[] = [];
  const steps = check.limits.map((limit): Step => {
    const amount = amountOf(usage, limit.metric);
    const never = limit.shadow && !fits(limit, amount, at.priority);
    const step = never
      ? ({ kind: 'deny', retryAfterNs: -1n } as const)
      : limitConsume(limit, state, nowMs, amount, limit.shadow ? { ...at, maxWaitNs: 0n } : at);
    if (step.kind !== 'deny') return step;
    const retryAfterMs = never ? null : nsToMs(step.retryAfterNs);
    (limit.shadow ? shadow : violations).push(
      violation(check, limit, state, nowMs, usage, retryAfterMs),
    );
    return { kind: 'skip' };
  });
  if (violations.length > 0) return { kind: 'deny', violations, shadow };
  const writes = steps.some((step) => step.kind === 'write');
  const extra: Assignment[] = [...also()];
  if (writes) extra.push(...budgetDefinitions(check, state, true));
  const update = combine(
    engine,
    check.key,
    [...steps, { kind: 'write', set: extra }],
    state,
    nowMs,
    shardCondition(shards),
    shards,
  );
  if (!update) return { kind: 'none', shadow };
  const converts = steps.some((step) => step.kind === 'write' && step.converts === true);
  return { kind: 'write', update, converts, shadow };
}

/**
 * What a quota with budget alerts records beside its window for the usage aggregator: its limit
 * and thresholds (`limit|t1,t2`), so that alerts follow the budget in force when usage is
 * counted; cleared when its thresholds were taken off, or the item would go on alerting on them.
 * With `always` false, only where the item (as `state` shows it) records another definition.
 */
export function budgetDefinitions(
  check: ScopeCheck,
  state: ItemState | undefined,
  always: boolean,
): Assignment[] {
  return check.limits.flatMap((limit): Assignment[] => {
    if (limit.kind !== 'quota') return [];
    const attr = bucketAttributes.alerts(limit.name);
    const recorded = own(state, attr);
    const definition = limit.alerts ? `${limit.limit}|${limit.alerts.join(',')}` : '';
    if (definition === '' && !recorded) return [];
    return always || recorded !== definition ? [{ attr, value: definition }] : [];
  });
}

/**
 * A scope as its items may carry budget alerts: none when it is or may be sharded — an enforced
 * limit of it asks for shards ({@link shardingOf}), or `shards` (the count this process knows it
 * to have) splits it. Each of its items holds a share of every quota, and an alert judged on one
 * would fire once per shard, at a shard's share: its quotas lose their thresholds (defaults
 * too), so nothing is recorded for them and an item that records a definition has it cleared by
 * its next write.
 */
export function alertsOff(check: ScopeCheck, shards: number): ScopeCheck {
  if (!check.limits.some((limit) => limit.kind === 'quota' && limit.alerts)) return check;
  if (shards === 1 && !shardingOf(check.limits)) return check;
  const limits = check.limits.map((limit): Limit => {
    if (limit.kind !== 'quota' || !limit.alerts) return limit;
    const { alerts: _off, ...quota } = limit;
    return quota;
  });
  return { ...check, limits };
}

/** What taking `amount` from one limit would do, given an item's state. */
export function limitConsume(
  limit: Limit,
  state: ItemState | undefined,
  nowMs: number,
  amount: number,
  options: ConsumeOptions,
): Step {
  return limit.kind === 'bucket'
    ? bucketConsume(limit, state, toNs(nowMs), amount, options)
    : quotaConsume(limit, state, nowMs, amount, options);
}

/** A scope on one of its shards: the shard's key and its share of the limits. */
export interface Placement {
  readonly check: ScopeCheck;
  readonly index: number;
  /** The shard count the shard holds its share at (as last seen; its writes check it). */
  readonly shards: number;
}

/**
 * Scope `check` on shard `index`, at the share the shard holds as last seen (with no budget
 * alerts when that is a share: see {@link alertsOff}).
 */
export function place(engine: EngineState, check: ScopeCheck, index: number): Placement {
  const key = shardKey(check.key, index);
  const shards = shardsAt(engine, key);
  const { limits } = alertsOff(check, shards);
  return { check: { ...check, key, limits: shareOf(limits, index, shards) }, index, shards };
}

/** A shard's violations as the whole scope's: its whole limit and what remains of it. */
export function whole(
  engine: EngineState,
  check: ScopeCheck,
  violations: readonly Violation[],
  nowMs: number,
): Violation[] {
  if (engine.shardCount(check.key) === 1) return [...violations];
  const standing = scopeStatuses(engine, check, nowMs);
  return violations.map((v) => {
    const limit = check.limits.find((l) => l.name === v.name);
    const status = standing.find((st) => st.name === v.name);
    return {
      ...v,
      ...(limit ? { limit: limit.limit } : {}),
      ...(status ? { remaining: status.remaining } : {}),
    };
  });
}
