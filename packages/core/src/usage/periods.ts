/**
 * The periods usage history counts in, and the row updates that add to them. The aggregator
 * writes one row per entity, resource and hour: an hour of the entity's own day (its time zone;
 * UTC hours unless the zone's offset is not a whole number of hours), which names its local day
 * and month, so days and months are summed from hours when read. Top entities are kept on
 * boards per local day and month (boards.ts); aggregators before boards wrote a top-entities row
 * per entity, spread over {@link TOP_SHARDS} partitions, still read.
 */
import { SERVICE_DEFAULTS } from '../defaults.js';
import { calendarWindow, isoDate } from '../engine/calendar.js';
import { PERIOD_SECONDS } from '../engine/limits.js';
import { checkUsageContext, type UsageContext } from '../engine/usage-context.js';
import {
  TABLE_SCHEMA,
  TOP_SHARDS,
  usageAttributes as U,
  type UsageGranularity,
  usageKeys,
} from '../store/schema.js';
import type { Assignment, ItemKey } from '../store/types.js';
import { boardKey, boardShard, nameHash } from './boards.js';

const HOUR_MS = PERIOD_SECONDS.hour * 1_000;

/**
 * The entity whose rows are the deployment-wide roll-up: every lease and refusal once, per
 * resource and UTC hour (no entity's name can be `*`).
 */
export const ROLLUP_ENTITY = '*';

/** One period: `[startMs, endMs)`. */
export interface Period {
  readonly startMs: number;
  readonly endMs: number;
}

/**
 * The period of `granularity` that holds `atMs`, in `timeZone`. Hours are counted from the local
 * day's start, and the last one ends with the day (a day of 23 or 25 hours, or one that moves
 * its clocks by half an hour, still holds whole hours of its own).
 */
export function periodOf(atMs: number, granularity: UsageGranularity, timeZone: string): Period {
  if (granularity !== 'hour') return calendarWindow(atMs, granularity, timeZone);
  const day = calendarWindow(atMs, 'day', timeZone);
  const startMs = day.startMs + Math.floor((atMs - day.startMs) / HOUR_MS) * HOUR_MS;
  return { startMs, endMs: Math.min(startMs + HOUR_MS, day.endMs) };
}

/** The local date (YYYY-MM-DD) of an instant in a time zone. */
export const localDate = isoDate;

/** The key of a top-entities period: `YYYY-MM-DD` for a day, `YYYY-MM` for a month. */
export const topDate = (granularity: 'day' | 'month', date: string): string =>
  granularity === 'day' ? date : date.slice(0, 7);

/** Which partition of top-entities rows (written by aggregators before boards) holds an entity. */
export const topShard = (entity: string): number => nameHash(entity) % TOP_SHARDS;

/** What to add to rows: metric deltas, leases, refusals by limit. */
export interface RowDelta {
  readonly metrics: ReadonlyMap<string, bigint>;
  readonly leases: bigint;
  readonly denied: ReadonlyMap<string, bigint>;
}

/** One row update: its key, the attributes it sets once, and what it adds. */
export interface RowWrite {
  readonly key: ItemKey;
  readonly fixed: readonly Assignment[];
  readonly delta: RowDelta;
}

const DAY_S = PERIOD_SECONDS.day;

/**
 * The row one entity's usage of `resource` at `atMs` adds to: its hour row for the resource. An
 * hour row is kept as long as its month's would be (`retentionDays` after the month ends): a
 * month is summed from its hours.
 */
export function hourRow(
  entity: string,
  timeZone: string,
  resource: string,
  atMs: number,
  delta: RowDelta,
  retentionDays: number = SERVICE_DEFAULTS.usageRetentionDays,
): RowWrite {
  const hour = periodOf(atMs, 'hour', timeZone);
  const day = periodOf(atMs, 'day', timeZone);
  const month = periodOf(atMs, 'month', timeZone);
  return {
    key: usageKeys.usageHour(entity, new Date(hour.startMs).toISOString(), resource),
    fixed: [
      { attr: U.periodStart, value: BigInt(hour.startMs) },
      { attr: U.periodEnd, value: BigInt(hour.endMs) },
      { attr: U.dayStart, value: BigInt(day.startMs) },
      { attr: U.dayEnd, value: BigInt(day.endMs) },
      { attr: U.monthStart, value: BigInt(month.startMs) },
      { attr: U.monthEnd, value: BigInt(month.endMs) },
      { attr: TABLE_SCHEMA.ttlAttribute, value: expiresAtS(month.endMs, retentionDays) },
    ],
    delta,
  };
}

/** When a row of a period ending at `endMs` expires (epoch s): `retentionDays` after. */
export const expiresAtS = (endMs: number, retentionDays: number): bigint =>
  BigInt(Math.ceil(endMs / 1_000) + retentionDays * DAY_S);

/**
 * The top-entities boards an entity's usage at `atMs` counts in: its local day's and month's
 * (the board item of the period that holds it), each with when it expires (epoch s).
 */
export function boardsFor(
  entity: string,
  timeZone: string,
  atMs: number,
  retentionDays: number = SERVICE_DEFAULTS.usageRetentionDays,
): { key: ItemKey; expiresAtS: number }[] {
  const date = localDate(atMs, timeZone);
  return (['day', 'month'] as const).map((granularity) => ({
    key: boardKey(granularity, topDate(granularity, date), boardShard(entity)),
    expiresAtS: Number(expiresAtS(periodOf(atMs, granularity, timeZone).endMs, retentionDays)),
  }));
}

/** Sums deltas of one row. */
export function addDeltas(a: RowDelta, b: RowDelta): RowDelta {
  const sum = (x: ReadonlyMap<string, bigint>, y: ReadonlyMap<string, bigint>) => {
    const out = new Map(x);
    for (const [k, v] of y) out.set(k, (out.get(k) ?? 0n) + v);
    return out;
  };
  return {
    metrics: sum(a.metrics, b.metrics),
    leases: a.leases + b.leases,
    denied: sum(a.denied, b.denied),
  };
}

/** The assignments that add a delta to a row (none when it adds nothing). */
export function rowAssignments(row: RowWrite): Assignment[] {
  const adds: Assignment[] = [];
  const add = (attr: string, value: bigint) => {
    if (value !== 0n) adds.push({ attr, base: 0n, addToExisting: value });
  };
  for (const [metric, value] of row.delta.metrics) add(U.metric(metric), value);
  add(U.leases, row.delta.leases);
  for (const [name, value] of row.delta.denied) add(U.denied(name), value);
  return adds.length === 0 ? [] : [...row.fixed, ...adds];
}

/** Whether a context names entities and time zones rows can hold (the engine takes no other). */
export function placeable(context: UsageContext): boolean {
  try {
    checkUsageContext(context);
    return true;
  } catch {
    return false;
  }
}
