/**
 * Refunds into a sharded bucket, held to what the shards hold. A split moves part of an item's
 * backlog to its new half (shards.ts), so a lease charged before the split may find its item
 * holding less than it gives back: a refund written there alone would fall past empty and be
 * lost, the scope staying charged for units nobody holds. Instead the item takes what it holds
 * (on the condition that it still does), and the rest goes, in the same settlement, to the
 * scope's other shards that hold a backlog. With the clock still, the shards' backlogs add up to
 * what the leases charged there hold, so a refund always finds its place.
 */

import { bucketAttributes, shardKey, shardOf } from '../store/schema.js';
import type { Condition, ItemKey, ItemState, ItemUpdate } from '../store/types.js';
import type { LeasedBucket } from './gcra.js';
import { scaleOf } from './gcra.js';
import type { BucketLimit } from './limits.js';
import { countOf, frozenAt, shardCondition } from './shards.js';
import type { EngineState } from './state.js';
import type { Step } from './step.js';

/** A TAT's backlog past `nowNs`, in the item's TAT units, with the definition it is stored in. */
function backlogOf(
  limit: BucketLimit | LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
): { backlog: bigint; scale: string; nowX: bigint } | undefined {
  const x = state?.[bucketAttributes.tat(limit.name)];
  const stored = state?.[bucketAttributes.scale(limit.name)];
  if (typeof x !== 'bigint' || typeof stored !== 'string') return undefined;
  const [l = '1'] = stored.split('/');
  const nowX = nowNs * BigInt(l);
  return { backlog: x > nowX ? x - nowX : 0n, scale: stored, nowX };
}

/**
 * Takes up to `refund` (TAT units) off an item's backlog, on the condition that the item still
 * holds it; `rest` is what it could not take, in the units of the whole (unsharded) bucket.
 */
function takeBack(
  limit: BucketLimit | LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  refund: bigint,
): { step: Step; rest: bigint } {
  const share = BigInt(limit.share ?? 1);
  const stored = backlogOf(limit, state, nowNs);
  if (!stored) return { step: { kind: 'skip' }, rest: refund / share };
  const taken = refund < stored.backlog ? refund : stored.backlog;
  const rest = (refund - taken) / share;
  if (taken <= 0n) return { step: { kind: 'skip' }, rest };
  const tat = bucketAttributes.tat(limit.name);
  return {
    step: {
      kind: 'write',
      set: [{ attr: tat, add: -taken }],
      condition: {
        and: [
          { attr: bucketAttributes.scale(limit.name), op: '=', value: stored.scale },
          { attr: tat, op: '>=', value: stored.nowX + taken },
        ],
      },
    },
    rest,
  };
}

/**
 * A sharded bucket's refund of `refund` TAT units (as {@link bucketRefund} plans it) on the item
 * `state` is of: the part the item holds, and the rest, for {@link spillRefunds}.
 */
export function heldRefund(
  leased: LeasedBucket,
  state: ItemState | undefined,
  nowNs: bigint,
  refund: Step,
): { step: Step; rest: bigint } {
  if (refund.kind !== 'write') return { step: refund, rest: 0n };
  const [move] = refund.set;
  if (!move || !('add' in move)) return { step: refund, rest: 0n };
  return takeBack(leased, state, nowNs, -move.add);
}

/** What a settlement writes to a scope's other shards, and the shards it should read first. */
export interface Spills {
  readonly updates: readonly ItemUpdate[];
  /** Set when a rest found no place in what this process remembers of the shards. */
  readonly unplaced: readonly ItemKey[];
}

/**
 * Places what the item `key` could not hold of each bucket's refund (`rests`, whole-bucket TAT
 * units by limit name) on the scope's other shards, as this process remembers them: each takes
 * what it holds, on the condition that it still does. `conditions` are what every write to the
 * scope's items carries beside its shard count (the lease's generation).
 */
export function spillRefunds(
  engine: EngineState,
  key: ItemKey,
  limits: readonly BucketLimit[],
  rests: ReadonlyMap<string, bigint>,
  nowNs: bigint,
  condition: Condition,
): Spills {
  const { base, index } = shardOf(key);
  const count = engine.shardCount(base);
  const left = new Map(rests);
  const updates: ItemUpdate[] = [];
  for (let offset = 1; offset < count && [...left.values()].some((r) => r > 0n); offset++) {
    const at = shardKey(base, (index + offset) % count);
    const state = engine.stateOf(at);
    const n = countOf(state);
    if (!state || n === 1 || frozenAt(state) !== undefined) continue; // unborn, unseen, splitting
    const set: ItemUpdate['set'][number][] = [];
    const conditions: Condition[] = [condition, shardCondition(n)];
    for (const limit of limits) {
      const rest = left.get(limit.name) ?? 0n;
      if (rest <= 0n) continue;
      const share = { ...limit, share: n };
      if (backlogOf(share, state, nowNs)?.scale !== scaleOf(limit)) continue; // another definition
      const { step, rest: unheld } = takeBack(share, state, nowNs, rest * BigInt(n));
      if (step.kind !== 'write') continue;
      set.push(...step.set);
      if (step.condition) conditions.push(step.condition);
      left.set(limit.name, unheld);
    }
    if (set.length > 0) updates.push({ key: at, set, condition: { and: conditions } });
  }
  const unplaced = [...left.values()].some((r) => r > 0n)
    ? Array.from({ length: count }, (_, s) => shardKey(base, s))
    : [];
  return { updates, unplaced };
}
