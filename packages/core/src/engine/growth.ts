/**
 * Growing a sharded scope (shards.ts): when to split, and the split itself, which any number of
 * processes may run at once, each of its writes landing once.
 */

import { StoreUnavailableError } from '../errors.js';
import { own } from '../names.js';
import { itemAttributes, shardKey, shardOf, TABLE_SCHEMA } from '../store/schema.js';
import type { Assignment, Condition, ItemKey, ItemState, ItemUpdate } from '../store/types.js';
import type { Sharding } from './limits.js';
import { ceilDiv, NS_PER_S } from './nanos.js';
import {
  countOf,
  frozenAt,
  generationIs,
  generationOf,
  quotaShare,
  shardCondition,
} from './shards.js';
import { type EngineState, keyOf, sleep, toNs } from './state.js';

const N = itemAttributes.shards;
const FROZEN_AT = itemAttributes.frozenAt;
const WRITES = itemAttributes.writes;
const BORN = itemAttributes.bornFrozen;

/**
 * After a write to a shard: grows the scope when it has fewer shards than its limits ask, or
 * when the item is hot (its write counter, seen twice at least a second apart, moves faster than
 * `shardGrowWritesPerSecond`, defaults.ts) and may grow.
 */
export function observe(
  engine: EngineState,
  key: ItemKey,
  state: ItemState,
  sharding: Sharding | undefined,
): void {
  if (!sharding) return;
  const count = countOf(state);
  const { base } = shardOf(key);
  if (count < sharding.shards) return void growInBackground(engine, base, sharding.shards);
  if (count >= sharding.max) return;
  const writes = state[WRITES];
  if (typeof writes !== 'bigint') return;
  const nowMs = engine.clock();
  const id = keyOf(key);
  const last = engine.writeCounts.get(id);
  if (!last) {
    engine.writeCounts.set(id, { writes, atMs: nowMs });
    return;
  }
  const elapsedMs = nowMs - last.atMs;
  if (elapsedMs < 1_000) return;
  engine.writeCounts.set(id, { writes, atMs: nowMs });
  const perSecond = (Number(writes - last.writes) * 1_000) / elapsedMs;
  if (perSecond >= engine.tuning.shardGrowWritesPerSecond)
    growInBackground(engine, base, Math.min(sharding.max, count * 2));
}

/** A throttled write to a scope that may grow: DynamoDB says the item is too hot. */
export function throttled(engine: EngineState, key: ItemKey, sharding: Sharding | undefined): void {
  if (!sharding) return;
  const { base } = shardOf(key);
  const count = countOf(engine.stateOf(key));
  if (count < sharding.max) growInBackground(engine, base, Math.min(sharding.max, count * 2));
}

/** Starts growing a scope to `target` shards unless this process already is; errors are reported. */
export function growInBackground(
  engine: EngineState,
  base: ItemKey,
  target: number,
): Promise<void> {
  const id = keyOf(base);
  const running = engine.growing.get(id);
  if (running) return running;
  const growth = grow(engine, base, target)
    .catch((error: unknown) => engine.onBackgroundError(error))
    .finally(() => engine.growing.delete(id));
  engine.growing.set(id, growth);
  return growth;
}

/**
 * Splits the scope's shards until every one of the first `target` is at `target` or more.
 * Safe to run in any number of processes at once: each split commits once.
 */
export async function grow(engine: EngineState, base: ItemKey, target: number): Promise<void> {
  for (let round = 0; round < 2 * Math.log2(target) + 2; round++) {
    const keys = Array.from({ length: target }, (_, s) => shardKey(base, s));
    const states = await Promise.all(keys.map((key) => engine.store.get(key)));
    // The splits of one round are of distinct items: run them at once.
    const splits = keys.flatMap((key, s) => {
      const state = states[s];
      if (state === undefined && s > 0) return []; // to be born by its parent's split
      engine.remember(key, state ?? {});
      if (frozenAt(state) !== undefined) return [completeSplit(engine, key, state ?? {})];
      const count = countOf(state);
      return count < target ? [split(engine, base, s, count)] : [];
    });
    if (splits.length === 0) return;
    await Promise.all(splits);
  }
}

/** Splits shard `index` of `count` into `index` and `index + count`. */
async function split(
  engine: EngineState,
  base: ItemKey,
  index: number,
  count: number,
): Promise<void> {
  const key = shardKey(base, index);
  const freeze = await engine.store.update({
    key,
    set: [
      { attr: N, value: BigInt(-2 * count) },
      { attr: FROZEN_AT, value: BigInt(Date.now()) }, // wall time: liveness, not limit math
    ],
    // A frozen item is a shard from now on: its half may be born at any step, and the scope's
    // shards must all stay (shards.ts). Kept, a whole item's TTL would let DynamoDB delete it
    // while a splitter that stopped leaves its half, and it would come back whole beside it.
    remove: [TABLE_SCHEMA.ttlAttribute],
    condition: shardCondition(count),
  });
  const state = freeze.item ?? {};
  engine.remember(key, state);
  // Frozen by another process for the same split: finish it; anything else: read again.
  if (freeze.ok || countOf(state) === 2 * count) await completeSplit(engine, key, state);
}

/** Attributes a split moves a part of, or copies, to the new half. */
const LIMIT_STATE = /^[bsrwa]_/;

/**
 * Completes a frozen split in three writes, each conditioned so that any number of processes may
 * run it at once and each write lands once:
 *   1. the new half is created, frozen, with its part, while the splitting item is still frozen in
 *      the generation read (or, created already, read back);
 *   2. the splitting item keeps the rest (what it held less what the new half holds: exact
 *      whenever it runs) and thaws, if still in that generation;
 *   3. the new half thaws.
 * A reset of the scope meanwhile (a new generation, its state cleared) fails 1 or 2: the split
 * starts again from the item as it now is, and a new half made before the reset but missed by it
 * is cleared to the item's generation first. A frozen new half (`nb`) whose parent has not
 * thawed completes its parent's split first.
 */
export async function completeSplit(
  engine: EngineState,
  key: ItemKey,
  frozen: ItemState,
  again = 3,
): Promise<void> {
  if (frozenAt(frozen) === undefined) return;
  const count = countOf(frozen);
  const { base, index } = shardOf(key);
  if (frozen[BORN] !== undefined) {
    const parentKey = shardKey(base, index - count / 2);
    const parent = await engine.store.get(parentKey);
    if (parent && frozenAt(parent) !== undefined && parent[BORN] === undefined)
      await completeSplit(engine, parentKey, parent);
    return thaw(engine, key, count);
  }
  const generation = generationOf(frozen);
  const stillFrozen: Condition = {
    and: [{ attr: N, op: '=', value: BigInt(-count) }, { absent: BORN }, generationIs(generation)],
  };
  const half = shardKey(base, index + count / 2);
  const halfState = await createHalf(engine, key, half, frozen, stillFrozen);
  if (halfState === undefined) return startAgain(engine, key, count, again);
  const kept: Assignment[] = [{ attr: N, value: BigInt(count) }];
  for (const [attr, value] of Object.entries(frozen)) {
    const moved = own(halfState, attr);
    if (typeof value !== 'bigint' || typeof moved !== 'bigint') continue;
    // A TAT: 2x − x_half leaves the backlog the two held (x − now each way) to this one.
    if (attr.startsWith('b_')) kept.push({ attr, value: 2n * value - moved });
    else if (attr.startsWith('u_')) kept.push({ attr, value: value - moved });
  }
  const thawedParent = await engine.store.update({
    key,
    set: kept,
    remove: [FROZEN_AT, WRITES, TABLE_SCHEMA.ttlAttribute],
    condition: stillFrozen,
  });
  engine.remember(key, thawedParent.item ?? {});
  // Still frozen for this split: in another generation (a reset); else another process thawed it.
  const parent = thawedParent.item;
  if (!thawedParent.ok && frozenAt(parent) !== undefined && countOf(parent) === count)
    return startAgain(engine, key, count, again);
  await thaw(engine, half, count);
}

/**
 * Step 1 of {@link completeSplit}: the new half as it stands, created from `frozen` if absent and
 * the splitting item is still `stillFrozen`; one made in an older generation than `frozen`'s (a
 * reset missed it) cleared to it. Undefined when the splitting item is no longer as read.
 */
async function createHalf(
  engine: EngineState,
  key: ItemKey,
  half: ItemKey,
  frozen: ItemState,
  stillFrozen: Condition,
): Promise<ItemState | undefined> {
  const count = countOf(frozen);
  for (let attempt = 0; attempt < 5; attempt++) {
    const created: ItemUpdate = {
      key: half,
      set: [
        { attr: N, value: BigInt(-count) },
        { attr: FROZEN_AT, value: BigInt(Date.now()) },
        { attr: BORN, value: 1n },
        ...halfOf(frozen, shardOf(key).index, count, engine.clock()),
      ],
      condition: { absent: TABLE_SCHEMA.partitionKey },
    };
    const result = await engine.store.transact([created, { key, check: stillFrozen }]);
    if (result.ok) return applyCreated(created);
    const [onHalf, onItem] = result.failures;
    if (onItem?.reason === 'condition') return undefined;
    if (onHalf?.reason !== 'condition') continue; // a conflict: again
    const existing = onHalf.item ?? {};
    if (generationOf(existing) >= generationOf(frozen)) return existing;
    // Made before a reset that did not reach it: cleared to the item's generation (still frozen).
    const stale = Object.keys(existing).filter((attr) => LIMIT_STATE.test(attr));
    const cleared = await engine.store.update({
      key: half,
      set: [{ attr: itemAttributes.generation, value: BigInt(generationOf(frozen)) }],
      remove: stale,
      condition: { and: [{ exists: BORN }, generationIs(generationOf(existing))] },
    });
    if (cleared.ok) return cleared.item ?? {};
  }
  throw new StoreUnavailableError('a split kept conflicting; retry', { notApplied: true });
}

/** A split's item changed under it (a reset, or another process went further): read, go on. */
async function startAgain(engine: EngineState, key: ItemKey, count: number, again: number) {
  const now = (await engine.store.get(key)) ?? {};
  engine.remember(key, now);
  if (again > 0 && frozenAt(now) !== undefined && countOf(now) === count)
    await completeSplit(engine, key, now, again - 1);
}

/** The state a create-if-absent leaves, from its assignments. */
const applyCreated = (created: ItemUpdate): ItemState =>
  Object.fromEntries(created.set.flatMap((a) => ('value' in a ? [[a.attr, a.value]] : [])));

/** What the new half of a frozen item starts with: whole units of backlog, half of `used`. */
function halfOf(frozen: ItemState, index: number, count: number, nowMs: number): Assignment[] {
  const nowNs = toNs(nowMs);
  const set: Assignment[] = [];
  for (const [attr, value] of Object.entries(frozen)) {
    const scale = own(frozen, `s_${attr.slice(2)}`);
    if (attr.startsWith('b_') && typeof value === 'bigint' && typeof scale === 'string') {
      // The item keeps the backlog up to its new burst, the new half takes the rest, in whole
      // units: a refund later returns to the item the lease took from, which then still
      // holds it (halved backlogs would leave it nowhere to go, and fractions on both halves
      // units neither could admit). The halves' unit cost is twice the item's.
      const [limit = 1, periodSeconds = 1, burst = limit] = scale.split('/').map(Number);
      const nowX = nowNs * BigInt(limit);
      const period = BigInt(periodSeconds) * NS_PER_S;
      const unit = period * BigInt(count);
      const backlog = value > nowX ? 2n * (value - nowX) : 0n;
      const over = backlog - BigInt(quotaShare(burst, index, count)) * unit; // its new burst
      const away = over > 0n ? ceilDiv(over, unit) * unit : 0n;
      set.push({ attr, value: nowX + (away < backlog ? away : backlog) });
    } else if (attr.startsWith('u_') && typeof value === 'bigint') {
      set.push({ attr, value: value / 2n });
    } else if (LIMIT_STATE.test(attr) || attr === itemAttributes.generation) {
      set.push({ attr, value });
    }
  }
  return set;
}

/** Thaws a new half once its parent has its part. */
async function thaw(engine: EngineState, key: ItemKey, count: number): Promise<void> {
  const result = await engine.store.update({
    key,
    set: [{ attr: N, value: BigInt(count) }],
    remove: [FROZEN_AT, BORN],
    condition: { and: [{ attr: N, op: '=', value: BigInt(-count) }, { exists: BORN }] },
  });
  engine.remember(key, result.item ?? {});
}

/**
 * What to do about a write that found its item frozen for a split: complete the split when the
 * freeze is stale (its splitter stopped), else wait a moment for it.
 */
export async function thawed(engine: EngineState, key: ItemKey, state: ItemState): Promise<void> {
  const at = frozenAt(state);
  if (at === undefined) return;
  if (Date.now() - at >= engine.tuning.shardFreezeStaleMs) await completeSplit(engine, key, state);
  else await sleep(10 + Math.random() * 10);
}
