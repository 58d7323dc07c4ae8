/**
 * Sharded scopes: one scope's limits split over several items, so that a limit shared by many
 * callers (an org, a provider-wide model limit) is not capped by what one DynamoDB partition
 * writes per second.
 *
 * Shard `s` of a scope is the item `sk#s` beside the scope's own item (shard 0). An item records
 * how many shards split the scope where it stands: `n` (absent: 1, the scope is whole). An item
 * with `n` holds 1/`n` of every limit: a bucket its rate and burst exactly (its unit of usage
 * costs `n` times as much of its TAT; see gcra.ts), a quota `floor(limit / n)`, the first
 * `limit mod n` shards one more. Every write to a scope item is conditioned on the `n` it was
 * computed for, so no process ever charges an item at another share than the one it holds.
 *
 * Shards are only ever born by splitting one in halves: shard `s` of `n` splits into `s` and
 * `s + n`, both of `2n`. A quota's `used` is divided between the two; of a bucket's backlog the
 * item keeps what its new burst holds and whole units of the rest move (so a refund later finds
 * its units where the lease took them). The halves hold exactly what the one held: a split
 * neither loses nor invents capacity, at any moment. A split freezes its item (`n` = −2n: every
 * other write's condition fails, and it tries another shard or waits), then completes in three
 * single-item writes (see {@link completeSplit}). Whoever finds a freeze older than
 * {@link EngineTuning.shardFreezeStaleMs} completes it: nothing is stuck if the splitter dies.
 * Shards hold no TTL (a scope's shards must all stay, or a stale view could re-create one
 * whole), and their count never shrinks.
 */

import type { EngineTuning } from '../defaults.js';
import { own } from '../names.js';
import { itemAttributes, shardKey, shardOf, TABLE_SCHEMA } from '../store/schema.js';
import type { Assignment, Condition, ItemKey, ItemState } from '../store/types.js';
import type { Limit, Sharding } from './limits.js';
import { ceilDiv, NS_PER_S } from './nanos.js';
import { type EngineState, keyOf, sleep, toNs } from './state.js';

const N = itemAttributes.shards;
const FROZEN_AT = itemAttributes.frozenAt;
const WRITES = itemAttributes.writes;
const BORN = itemAttributes.bornFrozen;

/** The shard count an item records: 1 when whole; while frozen for a split, the count it splits to. */
export function countOf(state: ItemState | undefined): number {
  const n = state?.[N];
  return typeof n === 'bigint' ? Math.abs(Number(n)) : 1;
}

/** When a split froze this item (epoch ms), if it is frozen. */
export function frozenAt(state: ItemState | undefined): number | undefined {
  const n = state?.[N];
  if (typeof n !== 'bigint' || n >= 0n) return undefined;
  const at = state?.[FROZEN_AT];
  return typeof at === 'bigint' ? Number(at) : 0;
}

/**
 * The shard count to charge an item at: the one its last seen state records, else the most this
 * process knows its scope to have (a write conditioned on it corrects a wrong guess).
 */
export function shardsAt(engine: EngineState, key: ItemKey): number {
  const seen = engine.stateOf(key);
  return seen ? countOf(seen) : engine.shardCount(shardOf(key).base);
}

/** The condition every write to an item computed at `count` shards carries. */
export function shardCondition(count: number): Condition {
  return count === 1 ? { absent: N } : { attr: N, op: '=', value: BigInt(count) };
}

/** What shard `index` of `count` holds of each limit. */
export function shareOf<T extends Limit>(limits: readonly T[], index: number, count: number): T[] {
  if (count === 1) return [...limits];
  return limits.map((limit) =>
    limit.kind === 'bucket'
      ? { ...limit, share: count }
      : { ...limit, limit: quotaShare(limit.limit, index, count) },
  );
}

/** A quota's share on shard `index` of `count`: the shares add up to `limit` exactly. */
export function quotaShare(limit: number, index: number, count: number): number {
  return Math.floor(limit / count) + (index < limit % count ? 1 : 0);
}

/** How the limits of one scope ask to be sharded: the most any of them asks. */
export function shardingOf(limits: readonly Limit[]): Sharding | undefined {
  let found: Sharding | undefined;
  for (const { sharding, shadow } of limits) {
    // A shadow limit never acts on callers: splitting its scope would hold the enforced limits
    // at a shard's share.
    if (!sharding || shadow) continue;
    found = {
      shards: Math.max(found?.shards ?? 1, sharding.shards),
      max: Math.max(found?.max ?? 1, sharding.max),
    };
  }
  return found;
}

/** The shard a split of shard `index` falls back on while `index` is not yet born. */
export function parentOf(index: number): number {
  return index - 2 ** Math.floor(Math.log2(index));
}

/** Picks a shard of `count`, other than those in `tried` when there is one. */
export function pickShard(count: number, tried: ReadonlySet<number> = new Set()): number {
  if (count === 1) return 0;
  const free = count - tried.size;
  if (free <= 0) return Math.floor(Math.random() * count);
  let k = Math.floor(Math.random() * free);
  for (let s = 0; s < count; s++) {
    if (tried.has(s)) continue;
    if (k-- === 0) return s;
  }
  return 0;
}

/** The assignments a consuming write to a growable scope adds: its write counter. */
export const counted = (sharding: Sharding | undefined, count: number): Assignment[] =>
  sharding && sharding.max > count ? [{ attr: WRITES, base: 0n, addToExisting: 1n }] : [];

/**
 * After a write to a shard: grows the scope when it has fewer shards than its limits ask, or
 * when the item is hot (its write counter, seen twice at least a second apart, moves faster than
 * {@link EngineTuning.shardGrowWritesPerSecond}) and may grow.
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
 * Completes a frozen split in three single-item writes, each conditioned so that any number of
 * processes may run it at once and each write lands once:
 *   1. the new half is created, frozen, with its part (or, created already, read back);
 *   2. the splitting item keeps the rest (what it held less what the new half holds: exact
 *      whenever it runs) and thaws;
 *   3. the new half thaws.
 * A frozen new half (`nb`) whose parent has not thawed completes its parent's split first.
 */
export async function completeSplit(engine: EngineState, key: ItemKey, frozen: ItemState) {
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
  const half = shardKey(base, index + count / 2);
  const created = await engine.store.update({
    key: half,
    set: [
      { attr: N, value: BigInt(-count) },
      { attr: FROZEN_AT, value: BigInt(Date.now()) },
      { attr: BORN, value: 1n },
      ...halfOf(frozen, count, engine.clock()),
    ],
    condition: { absent: TABLE_SCHEMA.partitionKey },
  });
  const halfState = created.item ?? {};
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
    condition: { and: [{ attr: N, op: '=', value: BigInt(-count) }, { absent: BORN }] },
  });
  engine.remember(key, thawedParent.item ?? {});
  await thaw(engine, half, count);
}

/** What the new half of a frozen item starts with: whole units of backlog, half of `used`. */
function halfOf(frozen: ItemState, count: number, nowMs: number): Assignment[] {
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
      const over = backlog - BigInt(burst) * period;
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

/**
 * Reads a scope's items (one strongly consistent read each): its own, and every shard it has
 * (a shard names the count where it stands; deeper ones are read as they are found).
 */
export async function readShards(
  engine: EngineState,
  base: ItemKey,
): Promise<{ readonly index: number; readonly state: ItemState }[]> {
  const own = (await engine.store.get(base)) ?? {};
  engine.remember(base, own);
  const found = [{ index: 0, state: own }];
  let read = 1;
  let count = Math.max(countOf(own), engine.shardCount(base));
  while (read < count) {
    const more = Array.from({ length: count - read }, (_, k) => read + k);
    const states = await Promise.all(more.map((index) => engine.store.get(shardKey(base, index))));
    read = count;
    states.forEach((state, k) => {
      if (state === undefined) return; // not born yet: its parent holds its share
      const index = more[k] as number;
      engine.remember(shardKey(base, index), state);
      found.push({ index, state });
      count = Math.max(count, countOf(state));
    });
  }
  return found;
}
