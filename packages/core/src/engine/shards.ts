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
 * item keeps what its new burst holds and whole units of the rest move (a refund later finds
 * what its item no longer holds on the scope's other shards: spill.ts). The halves hold exactly
 * what the one held: a split neither loses nor invents capacity, at any moment. A split freezes
 * its item (`n` = −2n: every other write's condition fails, and it tries another shard or
 * waits), then completes in three writes (growth.ts). Whoever finds a freeze older than
 * `shardFreezeStaleMs` (defaults.ts) completes it: nothing is stuck if the splitter dies.
 * Shards hold no TTL (a scope's shards must all stay, or a stale view could re-create one
 * whole), and their count never shrinks.
 */

import { itemAttributes, shardKey, shardOf } from '../store/schema.js';
import type { Assignment, Condition, ItemKey, ItemState } from '../store/types.js';
import type { Limit, Sharding } from './limits.js';
import type { EngineState } from './state.js';

const N = itemAttributes.shards;
const FROZEN_AT = itemAttributes.frozenAt;
const WRITES = itemAttributes.writes;
const _BORN = itemAttributes.bornFrozen;

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
 * process knows its scope to have (a write conditioned on it corrects a wrong guess). A shard
 * other than the first is born by a split and records its count from birth: seen without one, it
 * was not born yet (an absent item is remembered as `{}`), and it is never charged as a whole
 * scope, whose write would create it holding every limit whole beside the shards that hold them.
 */
export function shardsAt(engine: EngineState, key: ItemKey): number {
  const seen = engine.stateOf(key);
  const { base, index } = shardOf(key);
  if (seenBorn(index, seen)) return countOf(seen);
  return Math.max(engine.shardCount(base), leastCount(index));
}

/**
 * Whether `state`, as remembered of shard `index`, is of a shard born: shard 0 once seen at all,
 * another only recording its count (one not born yet is remembered as `{}` when tried).
 */
export function seenBorn(index: number, state: ItemState | undefined): state is ItemState {
  return state !== undefined && (index === 0 || typeof state[N] === 'bigint');
}

/** The fewest shards a scope with a shard `index` has: the power of 2 above it. */
const leastCount = (index: number) => (index === 0 ? 1 : 2 ** (Math.floor(Math.log2(index)) + 1));

/** An item's generation (0 until its first reset). */
export function generationOf(state: ItemState): number {
  const g = state[itemAttributes.generation];
  return typeof g === 'bigint' ? Number(g) : 0;
}

/** The condition that an item is still in `generation`. */
export function generationIs(generation: number): Condition {
  const attr = itemAttributes.generation;
  return generation === 0
    ? { or: [{ absent: attr }, { attr, op: '=', value: 0n }] }
    : { attr, op: '=', value: BigInt(generation) };
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
      ? { ...limit, share: count, shardIndex: index }
      : {
          ...limit,
          limit: quotaShare(limit.limit, index, count),
          shardOf: { limit: limit.limit, index, count },
        },
  );
}

/** A quota's share on shard `index` of `count`: the shares add up to `limit` exactly. */
export function quotaShare(limit: number, index: number, count: number): number {
  return Number(unitsShare(BigInt(limit), index, count));
}

/**
 * Shard `index`'s part of `units` whole units split over `count` shards: each 1/`count`, the
 * first `units mod count` one more, adding up to `units` exactly.
 */
export function unitsShare(units: bigint, index: number, count: number): bigint {
  const n = BigInt(count);
  return units / n + (BigInt(index) < units % n ? 1n : 0n);
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
