/**
 * Reading usage history: an entity's periods (one query of its partition), the top entities of
 * a day or month (one query per top-entities partition, no scan), and budget alerts.
 */

import { amountOf, PERIOD_SECONDS, sumUsage, type Usage } from '../engine/limits.js';
import { ValidationError } from '../errors.js';
import { decodeCursor, encodeCursor, startsWithInstant } from '../store/cursor.js';
import {
  alertAttributes as A,
  TOP_SHARDS,
  usageAttributes as U,
  USAGE_GRANULARITY,
  type UsageGranularity,
  usageKeys,
} from '../store/schema.js';
import type { AdminStore, ItemState } from '../store/types.js';
import type { BudgetAlert } from './alerts.js';
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

/**
 * The entity's usage in each period of `granularity` that overlaps `[fromMs, toMs)`, oldest
 * first: of `resource`, or with `*` (the default) of all its resources together.
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
  const g = USAGE_GRANULARITY[granularity];
  const low = usageKeys.usage(entity, granularity, iso(fromMs - LONGEST_MS[granularity]), '').sk;
  const high = usageKeys.usage(entity, granularity, iso(toMs), '').sk;
  const { pk } = usageKeys.usage(entity, granularity, '', '');
  const periods = new Map<string, UsagePeriod>();
  let after: string | undefined;
  do {
    const page = await store.query(pk, {
      limit: 1_000,
      between: [low, high],
      ...(after !== undefined ? { after } : {}),
    });
    for (const { key, state } of page.items) {
      const start = number(state[U.periodStart]);
      const end = number(state[U.periodEnd]);
      if (start >= toMs || end <= fromMs) continue;
      const rowResource = key.sk.slice(g.length + 1 + iso(start).length + 1);
      if (resource !== '*' && rowResource !== resource) continue;
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
    }
    after = page.next;
  } while (after !== undefined);
  return [...periods.values()]
    .filter((p) => p.leases !== 0 || Object.keys(p.usage).length || Object.keys(p.denied).length)
    .sort((a, b) => a.period_start.localeCompare(b.period_start));
}

const iso = (ms: number) => new Date(ms).toISOString();

/** One entity of a top-entities answer. */
export interface TopEntity {
  readonly entity: string;
  readonly usage: Usage;
  readonly leases: number;
  readonly denied: number;
}

/**
 * The `limit` entities with the most of `metric` (or of refusals, with `by: 'denied'`) in a
 * local day or month (`date` YYYY-MM-DD; a month takes its YYYY-MM).
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
): Promise<TopEntity[]> {
  const date = topDate(query.period, query.date);
  const entries = (
    await Promise.all(
      Array.from({ length: TOP_SHARDS }, async (_, shard) => {
        const { pk } = usageKeys.usageTop(query.period, date, shard, '');
        const out: TopEntity[] = [];
        let after: string | undefined;
        do {
          const page = await store.query(pk, {
            limit: 1_000,
            ...(after !== undefined ? { after } : {}),
          });
          for (const { key, state } of page.items) {
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
    )
  ).flat();
  const score = (e: TopEntity) =>
    query.by === 'denied' ? e.denied : amountOf(e.usage, query.metric);
  return entries
    .filter((e) => score(e) > 0)
    .sort((a, b) => score(b) - score(a) || a.entity.localeCompare(b.entity))
    .slice(0, query.limit);
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
  options: { readonly limit: number; readonly cursor?: string | undefined },
): Promise<{ items: ListedAlert[]; next?: string }> {
  const { pk } = usageKeys.alert('', { pk: '', sk: '' }, '', 0);
  const after = decodeCursor(options.cursor, startsWithInstant);
  const page = await store.query(pk, {
    limit: options.limit,
    descending: true,
    ...(after !== undefined ? { after } : {}),
  });
  return {
    items: page.items.map(({ state }) => ({
      ...(JSON.parse(String(state[A.detail])) as BudgetAlert),
      at: String(state[A.at]),
      delivered: state[A.sent] !== undefined,
    })),
    ...(page.next !== undefined ? { next: encodeCursor(page.next) } : {}),
  };
}
