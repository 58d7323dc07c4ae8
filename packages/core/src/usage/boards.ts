/**
 * Top entities of a day or month at a cost that does not grow with the number of entities: a
 * leaderboard the aggregator keeps per period, in {@link BOARD_SHARDS} items (entities spread by
 * a hash of their name), each holding as many as fit {@link BOARD_BYTES}. `top` reads those items
 * and nothing else.
 *
 * A board is exact until it first has more entities than it holds. Then it keeps the leaders of
 * each ranking in turn (cost, tokens, requests, refusals, then every other metric), and remembers,
 * per metric, the most an entity it let go had (its `floor`) and the most one was below zero (its
 * `debt`: a settlement counted before its acquire subtracts first). An entity not on the board
 * has from minus the debt to the floor; one that comes back counts from its return, so its figure
 * may be short by the floor, or over by the debt, as they then stood. Answers say whether they are
 * exact, and if not, the bound on their error.
 *
 * Each board is read, changed and written back conditional on its version, and counts each stream
 * record once by the same marks as the usage rows (marks.ts), kept in the board item.
 */

import { amountOf, STANDARD_METRICS, sumUsage, type Usage } from '../engine/limits.js';
import { own } from '../names.js';
import { TABLE_SCHEMA, usageKeys } from '../store/schema.js';
import type { Assignment, ItemKey, ItemState, ItemUpdate } from '../store/types.js';
import type { Contribution, StreamPosition } from './facts.js';
import { markSequence, markValue, staleMarks } from './marks.js';

/** Items one period's board is spread over (so that no one item takes every batch's write). */
export const BOARD_SHARDS = 2;
/**
 * Bytes of entities one board item holds (each write of it costs about one WCU a kilobyte): as
 * many entities as fit, at least {@link BOARD_MIN_ENTRIES}.
 */
export const BOARD_BYTES = 4_096;
/** Entities a board keeps however long their names and usage. */
export const BOARD_MIN_ENTRIES = 8;
/** What a board ranks by first to choose whom to keep (then refusals, then other metrics). */
const RANKED = ['cost_micro_usd', 'tokens', 'requests'] as const;

/** The sort key of a board item (an entity's name never starts with `#`). */
const BOARD_SK = '#board';
/** Attributes of a board item. */
const B = { body: 'b', version: 'v' } as const;

/** One entity on a board. */
export interface BoardEntry {
  readonly entity: string;
  readonly usage: Usage;
  readonly leases: number;
  /** Refusals, all limits together. */
  readonly denied: number;
  /** How much it may have had before it last came onto the board, per metric and of refusals. */
  readonly missed: Usage;
  /** How far below zero it may have been then (its figures may be that much too high). */
  readonly over: Usage;
}

/** A board as stored. */
export interface Board {
  readonly entries: readonly BoardEntry[];
  /** The most an entity not on the board may have, per metric and of refusals. */
  readonly floor: Usage;
  /** The most an entity not on the board may be below zero. */
  readonly debt: Usage;
}

/** The key of one board item. */
export const boardKey = (granularity: 'day' | 'month', date: string, shard: number): ItemKey => ({
  pk: usageKeys.usageTop(granularity, date, shard, '').pk,
  sk: BOARD_SK,
});

/** A hash of an entity's name (FNV-1a), which spreads entities over items. */
export function nameHash(entity: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < entity.length; i++) {
    hash ^= entity.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** Which board item of a period holds an entity. */
export const boardShard = (entity: string): number => nameHash(entity) % BOARD_SHARDS;

/** A board with nobody on it. */
export const EMPTY_BOARD: Board = { entries: [], floor: {}, debt: {} };

/** The board an item holds (an empty one for none). */
export function boardOf(item: ItemState | undefined): Board {
  const body = item?.[B.body];
  if (typeof body !== 'string') return EMPTY_BOARD;
  const [entries, floor, debt] = JSON.parse(body) as [
    [string, Usage, number, number, Usage?, Usage?][],
    Usage,
    Usage?,
  ];
  return {
    entries: entries.map(([entity, usage, leases, denied, missed, over]) => ({
      entity,
      usage,
      leases,
      denied,
      missed: missed ?? {},
      over: over ?? {},
    })),
    floor,
    debt: debt ?? {},
  };
}

/**
 * What a board ranks by: a metric, or refusals (`null`). In `floor` and `missed`, refusals are
 * kept under a name no metric can have (metric names start with a letter).
 */
export type Ranking = string | null;
const REFUSALS = '#refusals';
const nameOf = (ranking: Ranking) => ranking ?? REFUSALS;
const amountIn = (e: BoardEntry, ranking: Ranking) =>
  ranking === null ? e.denied : amountOf(e.usage, ranking);

/** What one part adds to one entity of a board. */
export interface BoardPart {
  readonly entity: string;
  readonly contribution: Contribution;
  readonly position: StreamPosition;
  readonly mark: string;
  readonly sequence: string;
}

/** The board with `parts` added, holding as many entities as fit. */
export function added(board: Board, parts: readonly BoardPart[]): Board {
  const byEntity = new Map(board.entries.map((e) => [e.entity, e]));
  for (const { entity, contribution: c } of parts) {
    const seen = byEntity.get(entity);
    let denied = 0;
    for (const n of c.denied.values()) denied += Number(n);
    const usage = Object.fromEntries([...c.metrics].map(([m, n]) => [m, Number(n)]));
    byEntity.set(entity, {
      entity,
      usage: sumUsage(seen?.usage ?? {}, usage),
      leases: (seen?.leases ?? 0) + Number(c.leases),
      denied: (seen?.denied ?? 0) + denied,
      missed: seen?.missed ?? board.floor,
      over: seen?.over ?? board.debt,
    });
  }
  return kept([...byEntity.values()], board);
}

/** An entry as a board item stores it. */
const stored = (e: BoardEntry): unknown[] => {
  if (hasUsage(e.over)) return [e.entity, e.usage, e.leases, e.denied, e.missed, e.over];
  if (hasUsage(e.missed)) return [e.entity, e.usage, e.leases, e.denied, e.missed];
  return [e.entity, e.usage, e.leases, e.denied];
};

/**
 * As many of `entries` as fit {@link BOARD_BYTES}, the floor and debt moved by those let go. Whom to keep
 * is taken in turns: the next highest by cost, by tokens, by requests, by refusals, then by each
 * other metric on the board, so that every ranking keeps its leaders.
 */
function kept(entries: readonly BoardEntry[], { floor, debt }: Board): Board {
  const live = entries.filter((e) => e.leases !== 0 || e.denied !== 0 || hasUsage(e.usage));
  const sizes = new Map(live.map((e) => [e.entity, JSON.stringify(stored(e)).length + 1]));
  let bytes = 0;
  for (const size of sizes.values()) bytes += size;
  if (bytes <= BOARD_BYTES) return { entries: live, floor, debt };
  const others = new Set(live.flatMap((e) => Object.keys(e.usage)));
  for (const metric of RANKED) others.delete(metric);
  const orders = [...RANKED, null, ...[...others].sort()].map((ranking) =>
    ranked(live, ranking).filter((e) => amountIn(e, ranking) > 0),
  );
  const keep = new Set<string>();
  bytes = 0;
  fill: for (let depth = 0; orders.some((order) => depth < order.length); depth++) {
    for (const order of orders) {
      const e = order[depth];
      if (!e || keep.has(e.entity)) continue;
      const size = sizes.get(e.entity) ?? 0;
      if (keep.size >= BOARD_MIN_ENTRIES && bytes + size > BOARD_BYTES) break fill;
      keep.add(e.entity);
      bytes += size;
    }
  }
  const raised = new Map(Object.entries(floor));
  const owed = new Map(Object.entries(debt));
  for (const e of live) {
    if (keep.has(e.entity)) continue;
    const value = sumUsage(e.usage, { [REFUSALS]: e.denied });
    for (const name of new Set([
      ...Object.keys(value),
      ...Object.keys(e.missed),
      ...Object.keys(e.over),
    ])) {
      const most = amountOf(value, name) + amountOf(e.missed, name);
      const least = amountOf(value, name) - amountOf(e.over, name);
      if (most > 0) raised.set(name, Math.max(raised.get(name) ?? 0, most));
      if (least < 0) owed.set(name, Math.max(owed.get(name) ?? 0, -least));
    }
  }
  return {
    entries: live.filter((e) => keep.has(e.entity)),
    floor: Object.fromEntries(raised),
    debt: Object.fromEntries(owed),
  };
}

const hasUsage = (u: Usage) => Object.values(u).some((n) => n !== 0);

const STANDARD: ReadonlySet<string> = new Set([...STANDARD_METRICS, REFUSALS]);
const standard = (u: Usage): Usage =>
  Object.fromEntries(Object.entries(u).filter(([name]) => STANDARD.has(name)));

/** The board with standard metrics only (one DynamoDB refused as too large). */
export function withoutCustom(board: Board): Board {
  return {
    entries: board.entries.map((e) => ({
      ...e,
      usage: standard(e.usage),
      missed: standard(e.missed),
      over: standard(e.over),
    })),
    floor: standard(board.floor),
    debt: standard(board.debt),
  };
}

/** Entries by `ranking`, most first (then by name). */
export function ranked(entries: readonly BoardEntry[], ranking: Ranking): BoardEntry[] {
  return [...entries].sort(
    (a, b) => amountIn(b, ranking) - amountIn(a, ranking) || a.entity.localeCompare(b.entity),
  );
}

/**
 * The write that replaces a board read at `version` (absent: none yet) with `board`, moving the
 * marks of `parts` and removing marks too old to guard anything.
 */
export function boardWrite(
  key: ItemKey,
  item: ItemState | undefined,
  board: Board,
  parts: readonly BoardPart[],
  expiresAtS: number,
  nowMs: number,
): ItemUpdate {
  const version = item?.[B.version];
  const body = JSON.stringify([
    board.entries.map(stored),
    board.floor,
    ...(hasUsage(board.debt) ? [board.debt] : []),
  ]);
  const last = new Map<string, BoardPart>();
  for (const p of parts) if ((last.get(p.mark)?.sequence ?? '') < p.sequence) last.set(p.mark, p);
  const set: Assignment[] = [
    { attr: B.body, value: body },
    { attr: B.version, value: typeof version === 'bigint' ? version + 1n : 1n },
    { attr: TABLE_SCHEMA.ttlAttribute, value: BigInt(expiresAtS) },
    ...[...last].map(([attr, p]) => ({ attr, value: markValue(p.position) })),
  ];
  return {
    key,
    set,
    remove: staleMarks(item, nowMs).filter((attr) => !last.has(attr)),
    condition:
      typeof version === 'bigint'
        ? { attr: B.version, op: '=', value: version }
        : { absent: TABLE_SCHEMA.partitionKey },
  };
}

/** The parts past the board item's marks. */
export function pastMarks(parts: readonly BoardPart[], item: ItemState | undefined): BoardPart[] {
  return parts.filter((p) => {
    const seen = own(item, p.mark);
    return typeof seen !== 'string' || p.sequence > markSequence(seen);
  });
}

/**
 * The top `limit` of boards by `ranking`. Exact when no listed figure is uncertain and nobody
 * else can reach the last one listed: not an entity on a board that may be short (its figure and
 * what it may have missed), nor one let go (the floor). Otherwise `errorBound` is the most a
 * listed figure may be off by, and the most an entity not listed may have.
 */
export function topOf(
  boards: readonly Board[],
  ranking: Ranking,
  limit: number,
): { entries: BoardEntry[]; exact: boolean; errorBound: number } {
  const name = nameOf(ranking);
  const all = ranked(
    boards.flatMap((b) => b.entries),
    ranking,
  );
  const entries = all.filter((e) => amountIn(e, ranking) > 0).slice(0, limit);
  const listed = new Set(entries);
  const offBy = Math.max(
    0,
    ...entries.map((e) => Math.max(amountOf(e.missed, name), amountOf(e.over, name))),
  );
  // The most anyone not listed may have: an entry that may be short, or an entity let go.
  const others = Math.max(
    0,
    ...boards.map((b) => amountOf(b.floor, name)),
    ...all
      .filter((e) => !listed.has(e) && amountOf(e.missed, name) > 0)
      .map((e) => amountIn(e, ranking) + amountOf(e.missed, name)),
  );
  const lowest = entries.length === limit ? amountIn(entries[limit - 1] as BoardEntry, ranking) : 0;
  const exact = offBy === 0 && (others === 0 || others < lowest);
  return { entries, exact, errorBound: exact ? 0 : Math.max(offBy, others) };
}
