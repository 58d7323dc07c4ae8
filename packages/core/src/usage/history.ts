/**
 * Reading usage history: an entity's periods (from its partition's hour rows), the top entities of
 * a day or month (from the period's boards), and budget alerts.
 */

import { PERIOD_SECONDS, sumUsage, type Usage } from '../engine/limits.js';
import { ValidationError } from '../errors.js';
import { own } from '../names.js';
import { decodeCursor, encodeCursor, isAlertKey, queryWhere } from '../store/cursor.js';
import {
  alertAttributes as A,
  TOP_SHARDS,
  usageAttributes as U,
  type UsageGranularity,
  usageKeys,
} from '../store/schema.js';
import type { AdminStore, ItemState } from '../store/types.js';
import type { BudgetAlert } from './alerts.js';
import { BOARD_SHARDS, boardKey, boardOf, boardShard as boardShardOf, topOf } from './boards.js';
import { topDate } from './periods.js';

/** One period of usage of one resource (or `*`: every resource). */
export interface UsagePeriod {
  readonly period_start: string;
  readonly resource: string;
  readonly usage: Usage;
  readonly leases: number;
  readonly denied: Readonly<Record<string, number>>;
}

/** Longest range one usage query may span, per granularity (days). */
export const MAX_RANGE_DAYS: Readonly<Record<UsageGranularity, number>> = {
  hour: 31,
  day: 400,
  month: 5 * 366,
};

const DAY_MS = PERIOD_SECONDS.day * 1_000;
/** How long a period of each granularity lasts at most (a local day can be 25 hours). */
const LONGEST_MS: Readonly<Record<UsageGranularity, number>> = {
  hour: PERIOD_SECONDS.hour * 1_000,
  day: 2 * DAY_MS,
  month: 32 * DAY_MS,
};

/**
 * The instants usage keys can order: their sort keys hold ISO 8601 UTC times, which sort as text
 * only while the year has four digits (year 10000 is written `+010000-…` and sorts first).
 */
const KEY_EARLIEST_MS = Date.parse('0000-01-01T00:00:00.000Z');
const KEY_LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** The numbers of attributes starting with `prefix`, keyed by the rest of the name. */
function byPrefix(state: ItemState, prefix: string): Usage {
  return Object.fromEntries(
    Object.entries(state).flatMap(([attr, value]) =>
      attr.startsWith(prefix) && typeof value === 'bigint' && value !== 0n
        ? [[attr.slice(prefix.length), Number(value)]]
        : [],
    ),
  );
}

const number = (value: unknown): number => (typeof value === 'bigint' ? Number(value) : 0);

/** The attributes holding an hour row's period of each granularity. */
const PERIOD_OF: Readonly<Record<UsageGranularity, readonly [start: string, end: string]>> = {
  hour: [U.periodStart, U.periodEnd],
  day: [U.dayStart, U.dayEnd],
  month: [U.monthStart, U.monthEnd],
};

/**
 * The entity's usage in each period of `granularity` that overlaps `[fromMs, toMs)`, oldest
 * first: of `resource`, or with `*` (the default) of all its resources together. Days and months
 * are summed from the entity's hour rows (each names its local day and month); rows of days and
 * months that aggregators before hour rows wrote are read beside them.
 */
export async function usageHistory(
  store: AdminStore,
  query: {
    readonly entity: string;
    readonly granularity: UsageGranularity;
    readonly fromMs: number;
    readonly toMs: number;
    readonly resource?: string | undefined;
  },
): Promise<UsagePeriod[]> {
  const { entity, granularity, fromMs, toMs } = query;
  // Checked before any key is made: a range past what the keys order would reach DynamoDB upside down.
  if (!(fromMs - LONGEST_MS[granularity] >= KEY_EARLIEST_MS))
    throw new ValidationError('from', 'out of range: years 0000 to 9999 (UTC)');
  if (!(toMs <= KEY_LATEST_MS))
    throw new ValidationError('to', 'out of range: years 0000 to 9999 (UTC)');
  if (!(toMs > fromMs)) throw new ValidationError('to', 'must be after from');
  if (toMs - fromMs > MAX_RANGE_DAYS[granularity] * DAY_MS)
    throw new ValidationError('to', `at most ${MAX_RANGE_DAYS[granularity]} days after from`);
  const resource = query.resource ?? '*';
  const periods = new Map<string, UsagePeriod>();
  const add = (start: number, end: number, rowResource: string, state: ItemState) => {
    if (start >= toMs || end <= fromMs) return;
    if (resource !== '*' && rowResource !== resource) return;
    const id = resource === '*' ? iso(start) : `${iso(start)}#${rowResource}`;
    const period = periods.get(id) ?? {
      period_start: iso(start),
      resource,
      usage: {},
      leases: 0,
      denied: {},
    };
    periods.set(id, {
      ...period,
      usage: sumUsage(period.usage, byPrefix(state, U.metric(''))),
      denied: sumUsage(period.denied, byPrefix(state, U.denied(''))),
      leases: period.leases + number(state[U.leases]),
    });
  };
  const [startAttr, endAttr] = PERIOD_OF[granularity];
  const earliest = iso(fromMs - LONGEST_MS[granularity]);
  // Each period overlapping the range is read whole, the last one too: its hours after `to`.
  const latest = iso(Math.min(toMs + LONGEST_MS[granularity], KEY_LATEST_MS));
  const hours = (start: string) => usageKeys.usageHour(entity, start, '').sk;
  const { pk } = usageKeys.usageHour(entity, '', '');
  await eachRow(store, pk, [hours(earliest), hours(latest)], (sk, state) => {
    // An hour row's sort key: `u#<hour start>#<resource>`.
    const rowResource = sk.slice(hours(iso(number(state[U.periodStart]))).length);
    add(number(own(state, startAttr)), number(own(state, endAttr)), rowResource, state);
  });
  const legacy = (start: string) => usageKeys.usage(entity, granularity, start, '').sk;
  await eachRow(store, pk, [legacy(earliest), legacy(iso(toMs))], (sk, state) => {
    const start = number(state[U.periodStart]);
    add(start, number(state[U.periodEnd]), sk.slice(legacy(iso(start)).length), state);
  });
  return [...periods.values()]
    .filter((p) => p.leases !== 0 || Object.keys(p.usage).length || Object.keys(p.denied).length)
    .sort((a, b) => a.period_start.localeCompare(b.period_start));
}

/** Every row of partition `pk` whose sort key is in `between` (both included), page by page. */
async function eachRow(
  store: AdminStore,
  pk: string,
  between: readonly [string, string],
  each: (sk: string, state: ItemState) => void,
): Promise<void> {
  let after: string | undefined;
  do {
    const page = await store.query(pk, {
      limit: 1_000,
      between,
      ...(after !== undefined ? { after } : {}),
    });
    for (const { key, state } of page.items) each(key.sk, state);
    after = page.next;
  } while (after !== undefined);
}

const iso = (ms: number) => new Date(ms).toISOString();

/** One entity of a top-entities answer. */
export interface TopEntity {
  readonly entity: string;
  readonly usage: Usage;
  readonly leases: number;
  readonly denied: number;
}

/** A top-entities answer: exact, or with the most any figure of it may be off by. */
export interface TopEntities {
  readonly items: TopEntity[];
  /** Whether these are the top entities, with their figures, exactly. */
  readonly exact: boolean;
  /**
   * When not exact: the most a listed figure of the metric may be off by, and the most an
   * entity not listed may have of it. 0 when exact.
   */
  readonly errorBound: number;
}

/**
 * The `limit` entities with the most of `metric` (or of refusals, with `by: 'denied'`) in a
 * local day or month (`date` YYYY-MM-DD; a month takes its YYYY-MM): read from the period's
 * boards (a fixed number of items, however many entities there are), with the top-entities rows
 * aggregators before boards wrote.
 */
export async function topEntities(
  store: AdminStore,
  query: {
    readonly period: 'day' | 'month';
    readonly date: string;
    readonly metric: string;
    readonly by: 'usage' | 'denied';
    readonly limit: number;
  },
): Promise<TopEntities> {
  const date = topDate(query.period, query.date);
  const [boards, legacy] = await Promise.all([
    Promise.all(
      Array.from({ length: BOARD_SHARDS }, async (_, shard) =>
        boardOf(await store.get(boardKey(query.period, date, shard))),
      ),
    ),
    legacyTop(store, query.period, date),
  ]);
  const merged = boards.map((board) => ({ ...board, entries: [...board.entries] }));
  for (const row of legacy) {
    // A period counted partly before boards: the entity's row and its board entry add up.
    const board = merged[boardShardOf(row.entity)] as (typeof merged)[number];
    const i = board.entries.findIndex((e) => e.entity === row.entity);
    const seen = board.entries[i];
    const entry = {
      entity: row.entity,
      usage: sumUsage(seen?.usage ?? {}, row.usage),
      leases: (seen?.leases ?? 0) + row.leases,
      denied: (seen?.denied ?? 0) + row.denied,
      missed: seen?.missed ?? {},
      over: seen?.over ?? {},
    };
    if (seen) board.entries[i] = entry;
    else board.entries.push(entry);
  }
  const top = topOf(merged, query.by === 'denied' ? null : query.metric, query.limit);
  return {
    items: top.entries.map(({ entity, usage, leases, denied }) => ({
      entity,
      usage,
      leases,
      denied,
    })),
    exact: top.exact,
    errorBound: top.errorBound,
  };
}

/** The top-entities rows aggregators before boards wrote for a period (none since). */
async function legacyTop(
  store: AdminStore,
  period: 'day' | 'month',
  date: string,
): Promise<TopEntity[]> {
  const shards = await Promise.all(
    Array.from({ length: TOP_SHARDS }, async (_, shard) => {
      const { pk } = usageKeys.usageTop(period, date, shard, '');
      const out: TopEntity[] = [];
      let after: string | undefined;
      do {
        const page = await store.query(pk, {
          limit: 1_000,
          ...(after !== undefined ? { after } : {}),
        });
        for (const { key, state } of page.items) {
          if (key.sk.startsWith('#')) continue; // a board (the boards' shards share partitions)
          out.push({
            entity: key.sk,
            usage: byPrefix(state, U.metric('')),
            leases: number(state[U.leases]),
            denied: number(state[U.deniedTotal]),
          });
        }
        after = page.next;
      } while (after !== undefined);
      return out;
    }),
  );
  return shards.flat();
}

/** A budget alert as listed. */
export interface ListedAlert extends BudgetAlert {
  /** When it was recorded (ISO 8601). */
  readonly at: string;
  /** Whether it was sent (to the event bus or the webhook). */
  readonly delivered: boolean;
}

/**
 * Budget alerts, newest window first; `next` is the `cursor` of the page after, as the other
 * listings' (a cursor that is not one is a {@link ValidationError} naming `cursor`).
 */
export async function listAlerts(
  store: AdminStore,
  options: {
    readonly limit: number;
    readonly cursor?: string | undefined;
    /** Only this entity's alerts (a page then reads a bounded number: it may hold fewer). */
    readonly entity?: string | undefined;
  },
): Promise<{ items: ListedAlert[]; next?: string }> {
  const { pk } = usageKeys.alert('', { pk: '', sk: '' }, '', 0);
  const after = decodeCursor(options.cursor, isAlertKey);
  const asked = {
    limit: options.limit,
    descending: true,
    ...(after !== undefined ? { after } : {}),
  };
  const { entity } = options;
  const page =
    entity === undefined
      ? await store.query(pk, asked)
      : await queryWhere(
          store,
          pk,
          asked,
          (state) => (JSON.parse(String(state[A.detail])) as BudgetAlert).entity === entity,
        );
  return {
    items: page.items.map(({ state }) => ({
      ...(JSON.parse(String(state[A.detail])) as BudgetAlert),
      at: String(state[A.at]),
      delivered: state[A.sent] !== undefined,
    })),
    ...(page.next !== undefined ? { next: encodeCursor(page.next) } : {}),
  };
}
