/**
 * Refunds into a sharded bucket, held to what the shards hold. A split moves part of an item's
 * backlog to its new half (shards.ts), so a lease charged before the split may find its item
 * holding less than it gives back: a refund written there alone would fall past empty and be
 * lost, the scope staying charged for units nobody holds. Instead the item takes what it holds
 * (on the condition that it still does), and the rest goes, in the same write, to the scope's
 * other shards that hold a backlog. With the clock still, the shards' backlogs add up to what
 * the leases charged there hold, so a refund always finds its place.
 */

import { own } from '../names.js';
import { bucketAttributes, itemAttributes, shardKey, shardOf } from '../store/schema.js';
import type { Assignment, Condition, ItemKey, ItemState, ItemUpdate } from '../store/types.js';
import { bucketParams, type LeasedBucket } from './gcra.js';
import { thawed } from './growth.js';
import type { BucketLimit } from './limits.js';
import { countOf, frozenAt, readShards, shardCondition } from './shards.js';
import type { EngineState } from './state.js';
import type { Step } from './step.js';

/** DynamoDB's bound on the items of one transaction. */
export const TRANSACTION_ITEMS = 100;

/**
 * A bucket's state in an item: its backlog past `nowNs` and what one unit costs, in TAT units
 * at `share`. An item frozen to split (not the half it splits into) still holds its TAT at the
 * share it splits from, half of `share`: its backlog is twice as many TAT units at `share`
 * (read at `share`, half of what it holds would be taken back, the rest dropped or spilled in
 * halves of units no shard could admit).
 */
function storedBucket(name: string, state: ItemState | undefined, nowNs: bigint, share: number) {
  const x = own(state, bucketAttributes.tat(name));
  const scale = own(state, bucketAttributes.scale(name));
  if (typeof x !== 'bigint' || typeof scale !== 'string') return undefined;
  const [limit = 1, periodSeconds = 1] = scale.split('/').map(Number);
  const nowX = nowNs * BigInt(limit);
  const { P } = bucketParams({ limit, periodSeconds, burst: limit, share });
  const splitting =
    frozenAt(state) !== undefined && own(state, itemAttributes.bornFrozen) === undefined;
  const backlog = x > nowX ? (x - nowX) * (splitting ? 2n : 1n) : 0n;
  return { backlog, scale, nowX, unit: P };
}

/**
 * Takes up to `wanted` (TAT units) off a bucket's backlog, on the condition that the item still
 * holds it (and still has the definition it was read with); `unheld` is what it could not take.
 */
function takeBack(
  name: string,
  stored: NonNullable<ReturnType<typeof storedBucket>>,
  wanted: bigint,
): { step: Step; unheld: bigint } {
  const taken = wanted < stored.backlog ? wanted : stored.backlog;
  if (taken <= 0n) return { step: { kind: 'skip' }, unheld: wanted };
  const tat = bucketAttributes.tat(name);
  const step: Step = {
    kind: 'write',
    set: [{ attr: tat, add: -taken }],
    condition: {
      and: [
        { attr: bucketAttributes.scale(name), op: '=', value: stored.scale },
        { attr: tat, op: '>=', value: stored.nowX + taken },
      ],
    },
  };
  return { step, unheld: wanted - taken };
}

/**
 * A sharded bucket's refund (`refund`, as {@link bucketRefund} plans it) on the lease's own
 * item: the part the item holds, and the rest in units of usage scaled by the whole limit's
 * period (`rest`, for {@link spillRefunds}). An item this process has not seen takes nothing.
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
  const stored = storedBucket(leased.name, state, nowNs, leased.share ?? 1);
  if (!stored)
    return { step: { kind: 'skip' }, rest: dust(leased, -move.add / BigInt(leased.share ?? 1)) };
  const { step, unheld } = takeBack(leased.name, stored, -move.add);
  // Back to whole units: a unit at this share costs `share` times a whole one.
  return { step, rest: dust(leased, (unheld * wholeUnit(leased)) / stored.unit) };
}

/**
 * A rest of less than one unit of usage is not spilled (nor read for): what rounding leaves as
 * time passes, it would cost a read of every shard for nothing a call could use.
 */
const dust = (limit: BucketLimit | LeasedBucket, rest: bigint): bigint =>
  rest >= wholeUnit(limit) ? rest : 0n;

/** What one unit of `limit` costs in TAT units of the whole (unsharded) bucket. */
const wholeUnit = (limit: BucketLimit | LeasedBucket): bigint =>
  bucketParams({ ...limit, share: 1 }).P;

/** What a refund's rest comes to on a scope's other shards. */
export interface Spills {
  readonly updates: readonly ItemUpdate[];
  /** The scope's own item, when some rest found no place in what this process remembers. */
  readonly unplaced?: ItemKey;
}

/**
 * Places what the item `key` could not hold of each bucket's refund (`rests` by limit name, in
 * whole units scaled as {@link heldRefund} gives them) on the scope's other shards as this
 * process remembers them, those holding the most first, in at most `room` writes: each takes what
 * it holds, converted to the definition it stores, on the condition that it still holds it.
 * `condition` is what every write to the scope's items carries beside its shard count.
 */
export function spillRefunds(
  engine: EngineState,
  key: ItemKey,
  limits: readonly BucketLimit[],
  rests: ReadonlyMap<string, bigint>,
  nowNs: bigint,
  condition: Condition,
  room: number,
): Spills {
  const { base, index } = shardOf(key);
  const left = new Map(rests);
  const candidates = Array.from({ length: engine.shardCount(base) }, (_, s) => s)
    .filter((s) => s !== index)
    .map((s) => ({ at: shardKey(base, s), state: engine.stateOf(shardKey(base, s)) }))
    .filter(({ state }) => countOf(state) > 1 && frozenAt(state) === undefined)
    .map((c) => ({ ...c, holds: backlogOf(limits, c.state, nowNs) }))
    .sort((a, b) => (a.holds > b.holds ? -1 : a.holds < b.holds ? 1 : 0));
  const updates: ItemUpdate[] = [];
  for (const { at, state } of candidates) {
    if (updates.length >= room || ![...left.values()].some((r) => r > 0n)) break;
    const n = countOf(state);
    const set: Assignment[] = [];
    const conditions: Condition[] = [condition, shardCondition(n)];
    for (const limit of limits) {
      const rest = left.get(limit.name) ?? 0n;
      const stored = storedBucket(limit.name, state, nowNs, n);
      if (rest <= 0n || !stored) continue;
      // Backlog is kept in units of usage: a shard on another definition takes them at its own.
      const { step, unheld } = takeBack(
        limit.name,
        stored,
        (rest * stored.unit) / wholeUnit(limit),
      );
      if (step.kind !== 'write') continue;
      set.push(...step.set);
      if (step.condition) conditions.push(step.condition);
      left.set(limit.name, dust(limit, (unheld * wholeUnit(limit)) / stored.unit));
    }
    if (set.length > 0) updates.push({ key: at, set, condition: { and: conditions } });
  }
  const unplaced = [...left.values()].some((r) => r > 0n);
  return unplaced ? { updates, unplaced: base } : { updates };
}

/** What the shards of a scope hold of its buckets, in whole units (their order only). */
function backlogOf(
  limits: readonly BucketLimit[],
  state: ItemState | undefined,
  nowNs: bigint,
): bigint {
  let total = 0n;
  for (const limit of limits) {
    const stored = storedBucket(limit.name, state, nowNs, countOf(state));
    if (stored) total += (stored.backlog * wholeUnit(limit)) / stored.unit;
  }
  return total;
}

/**
 * Brings what this process remembers of the scopes `bases` up to date, for a refund that found
 * no place: reads every shard (and those they show were born since), and waits for a split under
 * way (or completes one that stalled). True when the memory is now the table's, no split under
 * way: a rest still unplaced then has nowhere to go (its units have refilled).
 */
export async function findRoom(engine: EngineState, bases: readonly ItemKey[]): Promise<boolean> {
  const scopes = await Promise.all(bases.map((base) => readShards(engine, base)));
  const splitting = scopes.flatMap((shards, i) =>
    shards.flatMap(({ index, state }) =>
      frozenAt(state) === undefined
        ? []
        : [thawed(engine, shardKey(bases[i] as ItemKey, index), state)],
    ),
  );
  await Promise.all(splitting);
  return splitting.length === 0;
}
