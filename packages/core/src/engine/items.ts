/**
 * Writes to scope items: turning per-limit steps into one conditional update (with its TTL),
 * moving an item between two lease totals (debt and bounded refunds), and what a lease remembers
 * of an item. Writes are sent tagged (tagged-writes.ts); a refused or failed acquire's are given
 * back (give-back.ts).
 */

import { own } from '../names.js';
import { shardOf, TABLE_SCHEMA } from '../store/schema.js';
import type {
  Assignment,
  Condition,
  ItemCheck,
  ItemKey,
  ItemState,
  ItemUpdate,
} from '../store/types.js';
import { bucketDebt, bucketRefund } from './gcra.js';
import type { LeasedItem, LeasedLimit } from './lease.js';
import { amountOf, type Usage } from './limits.js';
import { ceilDiv } from './nanos.js';
import { quotaDebt, quotaRefund, quotaStatus } from './quota.js';
import {
  countOf,
  generationIs,
  generationOf,
  shardCondition,
  shardsAt,
  shareOf,
} from './shards.js';
import { heldRefund, type Spills, spillRefunds } from './spill.js';
import { type EngineState, toNs } from './state.js';
import type { Step } from './step.js';
import type { ScopeCheck } from './types.js';

/**
 * Debt one item's quotas took from a window after the lease's own (a report above the estimate
 * once the lease's window had ended): limit name → `[window start ms, amount]`. A lower report
 * takes it back from there first; the lease's own window ended, so the rest is dropped.
 */
export type LaterDebts = Map<string, readonly [number, number]>;

type LeasedQuotaLimit = Extract<LeasedLimit, { readonly kind: 'quota' }>;

/** TTLs are rounded up to the hour, so writers of one item rarely disagree on it. */
const TTL_GRAIN_SECONDS = 3_600n;

/**
 * What a lease remembers of a check: its limits (each quota with the window it was charged in)
 * and the item's generation.
 */
export function leasedItem(check: ScopeCheck, state: ItemState, nowMs: number): LeasedItem {
  const shares = countOf(state);
  return {
    key: check.key,
    scope: check.scope,
    generation: generationOf(state),
    ...(shares > 1 ? { shares } : {}),
    limits: check.limits.map(
      (limit): LeasedLimit =>
        limit.kind === 'bucket'
          ? limit
          : { ...limit, windowStartMs: quotaStatus(limit, state, nowMs).windowStartMs },
    ),
  };
}

/**
 * One update from the per-limit steps of an item (skips contribute nothing here; the
 * conditions some of them rest on are added by {@link deltaUpdate}, the only writer whose skips
 * are decided from memory). When a step can
 * raise the item's state, the TTL is set past its horizon plus the slack, rounded up to the
 * hour, never below the TTL last seen, and only if the stored one is not later still: a TTL
 * never shrinks, so no write forgets what another one recorded (a debt, a window).
 */
export function combine(
  engine: EngineState,
  key: ItemKey,
  steps: readonly Step[],
  state: ItemState | undefined,
  nowMs: number,
  extra?: Condition,
  shards = 1,
): ItemUpdate | null {
  const set: Assignment[] = [];
  const conditions: Condition[] = [];
  let horizonNs: bigint | undefined;
  for (const step of steps) {
    if (step.kind !== 'write') continue;
    set.push(...step.set);
    if (step.condition) conditions.push(step.condition);
    if (step.horizonNs !== undefined && (horizonNs === undefined || step.horizonNs > horizonNs))
      horizonNs = step.horizonNs;
  }
  if (set.length === 0) return null;
  // A shard never expires (see shards.ts): its scope's other shards count on it.
  if (horizonNs !== undefined && shards === 1) {
    const ttlAttr = TABLE_SCHEMA.ttlAttribute;
    const untilS = ceilDiv(toNs(nowMs) + horizonNs, 1_000_000_000n);
    let ttl = ceilDiv(untilS + BigInt(engine.tuning.ttlSlackSeconds), TTL_GRAIN_SECONDS);
    ttl *= TTL_GRAIN_SECONDS;
    const seenTtl = state?.[ttlAttr];
    if (typeof seenTtl === 'bigint' && seenTtl > ttl) ttl = seenTtl;
    set.push({ attr: ttlAttr, value: ttl });
    conditions.push({ or: [{ absent: ttlAttr }, { attr: ttlAttr, op: '<=', value: ttl }] });
  }
  if (extra) conditions.push(extra);
  const [only] = conditions;
  if (conditions.length === 0 || !only) return { key, set };
  return { key, set, condition: conditions.length === 1 ? only : { and: conditions } };
}

/**
 * The write that moves one item from `previous` to `next` totals, or null if none moves.
 * Debt is always charged; a refund only of what the lease still holds there (see
 * {@link bucketRefund}), and only into the generation the lease was charged in.
 *
 * It is computed from the remembered state of the item, which may be older than the item. A
 * refund that memory says has nowhere to go (no bucket, another window) is skipped only on the
 * condition that the item still says so: a check when nothing else is written. A generation
 * remembered newer than the lease's proves a reset (generations only grow); an older one
 * proves nothing, and the refund goes out conditioned on the lease's generation.
 *
 * A sharded bucket's refund takes from the item only what it holds, and the rest goes to the
 * scope's other shards (`spills`, in at most `room` writes beside the item's: see spill.ts).
 */
export function deltaUpdates(
  engine: EngineState,
  item: LeasedItem,
  previous: Usage,
  next: Usage,
  nowMs: number,
  acquiredAtMs: number,
  room: number,
  later: LaterDebts = new Map(),
): { update: ItemUpdate | ItemCheck | null; spills: Spills } {
  const state = engine.stateOf(item.key);
  const nowNs = toNs(nowMs);
  const resetSince = state !== undefined && generationOf(state) > item.generation;
  // A shard is charged at the share it holds now (a split since the acquire halves it).
  const { index } = shardOf(item.key);
  const shards = shardsAt(engine, item.key);
  // What the lease took drained at the rate of the share it was charged at; counted at the share
  // the item holds now (a split since halves its rate), that is as if more time had passed.
  const faster = BigInt(Math.max(1, Math.floor(shards / (item.shares ?? 1))));
  const elapsedNs = (nowNs - toNs(acquiredAtMs)) * faster;
  let refunds = false;
  const rests = new Map<string, bigint>();
  const steps: Step[] = shareOf(item.limits, index, shards).map((limit) => {
    const held = BigInt(amountOf(previous, limit.metric));
    const delta = BigInt(amountOf(next, limit.metric)) - held;
    if (delta === 0n) return { kind: 'skip' };
    if (delta > 0n) {
      return limit.kind === 'bucket'
        ? bucketDebt(limit, state, nowNs, delta)
        : quotaDebtLater(limit, state, nowMs, delta, later);
    }
    if (resetSince) return { kind: 'skip' };
    let step =
      limit.kind === 'bucket'
        ? bucketRefund(limit, state, -delta, { amount: held, elapsedNs })
        : quotaRefundLater(limit, state, nowMs, -delta, later);
    if (limit.kind === 'bucket' && shards > 1) {
      const kept = heldRefund(limit, state, nowNs, step);
      if (kept.rest > 0n) rests.set(limit.name, kept.rest);
      step = kept.step;
    }
    if (step.kind === 'write') refunds = true;
    return step;
  });
  const generation = generationIs(item.generation);
  const onShard = shardCondition(shards);
  const update = combine(
    engine,
    item.key,
    steps,
    state,
    nowMs,
    refunds ? { and: [generation, onShard] } : onShard,
    shards,
  );
  const buckets = item.limits.flatMap((l) => (l.kind === 'bucket' && rests.has(l.name) ? [l] : []));
  const spills =
    rests.size === 0
      ? { updates: [] }
      : spillRefunds(engine, item.key, buckets, rests, nowNs, generation, room);
  const assumed = steps.flatMap((step) =>
    step.kind === 'skip' && step.assuming ? [step.assuming] : [],
  );
  const [one] = assumed;
  if (!one) return { update, spills };
  const holds: Condition = assumed.length === 1 ? one : { and: assumed };
  if (!update) return { update: { key: item.key, check: holds }, spills };
  const condition = update.condition ? { and: [update.condition, holds] } : holds;
  return { update: { ...update, condition }, spills };
}

/** A quota's debt, noted in `later` when it goes to a window after the lease's own. */
function quotaDebtLater(
  limit: LeasedQuotaLimit,
  state: ItemState | undefined,
  nowMs: number,
  amount: bigint,
  later: LaterDebts,
): Step {
  const step = quotaDebt(limit, state, nowMs, amount);
  const start = quotaStatus(limit, state, nowMs).windowStartMs;
  if (start !== limit.windowStartMs) {
    const before = later.get(limit.name);
    const kept = before && before[0] === start ? before[1] : 0;
    later.set(limit.name, [start, kept + Number(amount)]);
  }
  return step;
}

/**
 * A quota's refund: first of the debt the lease took from a later window (while it is still the
 * current one), else into the lease's own window (see {@link quotaRefund}).
 */
function quotaRefundLater(
  limit: LeasedQuotaLimit,
  state: ItemState | undefined,
  nowMs: number,
  amount: bigint,
  later: LaterDebts,
): Step {
  const debt = later.get(limit.name);
  if (debt) {
    const back = amount < BigInt(debt[1]) ? amount : BigInt(debt[1]);
    const step = quotaRefund({ ...limit, windowStartMs: debt[0] }, state, nowMs, back);
    if (step.kind === 'write') {
      const left = debt[1] - Number(back);
      if (left > 0) later.set(limit.name, [debt[0], left]);
      else later.delete(limit.name);
      return step; // the lease's own window is over: the rest has nowhere to go
    }
    if (step.kind === 'skip' && step.assuming) return step;
    later.delete(limit.name); // that window is over too
  }
  return quotaRefund(limit, state, nowMs, amount);
}

/** Every metric of `usage` at zero. */
export function zeroed(usage: Usage): Usage {
  return Object.fromEntries(Object.keys(usage).map((metric) => [metric, 0]));
}

/** What a successful update did to an item, applied to a remembered copy. */
export function applyLocally(state: ItemState, set: readonly Assignment[]): ItemState {
  const next = new Map(Object.entries(state));
  for (const a of set) {
    if ('value' in a) next.set(a.attr, a.value);
    else if ('ifAbsent' in a) next.set(a.attr, next.get(a.attr) ?? a.ifAbsent);
    else if ('copyOf' in a)
      next.set(a.attr, own(state, a.copyOf) ?? a.orElse); // as it was
    else {
      const current = next.get(a.attr);
      const base = typeof current === 'bigint' ? current : 'base' in a ? a.base : 0n;
      next.set(a.attr, base + ('add' in a ? a.add : a.addToExisting));
    }
  }
  return Object.fromEntries(next);
}
