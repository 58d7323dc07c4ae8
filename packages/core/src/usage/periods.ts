/**
 * The periods usage history rolls up into, and the row updates that add to them. Hours are UTC
 * hours; days and months are the entity's own (its time zone). Top-entities rows hold an
 * entity's totals per local day and month, spread over {@link TOP_SHARDS} partitions.
 */
import { SERVICE_DEFAULTS } from '../defaults.js';
import { calendarWindow, isoDate } from '../engine/calendar.js';
import { PERIOD_SECONDS } from '../engine/limits.js';
import {
  TABLE_SCHEMA,
  TOP_SHARDS,
  usageAttributes as U,
  type UsageGranularity,
  usageKeys,
} from '../store/schema.js';
import type { Assignment, ItemKey } from '../store/types.js';

const HOUR_MS = PERIOD_SECONDS.hour * 1_000;

/** One period: `[startMs, endMs)`. */
export interface Period {
  readonly startMs: number;
  readonly endMs: number;
}

/** The period of `granularity` that holds `atMs`, in `timeZone` (hours are always UTC hours). */
export function periodOf(atMs: number, granularity: UsageGranularity, timeZone: string): Period {
  if (granularity === 'hour') {
    const startMs = Math.floor(atMs / HOUR_MS) * HOUR_MS;
    return { startMs, endMs: startMs + HOUR_MS };
  }
  return calendarWindow(atMs, granularity, timeZone);
}

/** The local date (YYYY-MM-DD) of an instant in a time zone. */
export const localDate = isoDate;

/** The key of a top-entities period: `YYYY-MM-DD` for a day, `YYYY-MM` for a month. */
export const topDate = (granularity: 'day' | 'month', date: string): string =>
  granularity === 'day' ? date : date.slice(0, 7);

/** Which top-entities partition holds an entity (FNV-1a of its name). */
export function topShard(entity: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < entity.length; i++) {
    hash ^= entity.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % TOP_SHARDS;
}

/** What to add to rows: metric deltas, leases, refusals by limit. */
export interface RowDelta {
  readonly metrics: ReadonlyMap<string, bigint>;
  readonly leases: bigint;
  readonly denied: ReadonlyMap<string, bigint>;
}

/** One row update: its key, the attributes it sets once, and what it adds. */
export interface RowWrite {
  readonly key: ItemKey;
  /** A top-entities row (refusals as one total) rather than a history row (by limit). */
  readonly top: boolean;
  readonly fixed: readonly Assignment[];
  readonly delta: RowDelta;
}

const DAY_S = PERIOD_SECONDS.day;

/**
 * The rows one entity's usage of `resource` at `atMs` adds to: its hour, day and month rows for
 * the resource, and its top-entities rows of the day and the month.
 */
export function rowsFor(
  entity: string,
  timeZone: string,
  resource: string,
  atMs: number,
  delta: RowDelta,
  retentionDays: number = SERVICE_DEFAULTS.usageRetentionDays,
): RowWrite[] {
  const ttl = (endMs: number) => ({
    attr: TABLE_SCHEMA.ttlAttribute,
    value: BigInt(Math.ceil(endMs / 1_000) + retentionDays * DAY_S),
  });
  const rows: RowWrite[] = (['hour', 'day', 'month'] as const).map((granularity) => {
    const period = periodOf(atMs, granularity, timeZone);
    const start = new Date(period.startMs).toISOString();
    return {
      key: usageKeys.usage(entity, granularity, start, resource),
      top: false,
      fixed: [
        { attr: U.periodStart, value: BigInt(period.startMs) },
        { attr: U.periodEnd, value: BigInt(period.endMs) },
        ttl(period.endMs),
      ],
      delta,
    };
  });
  const date = localDate(atMs, timeZone);
  for (const granularity of ['day', 'month'] as const) {
    const period = periodOf(atMs, granularity, timeZone);
    rows.push({
      key: usageKeys.usageTop(granularity, topDate(granularity, date), topShard(entity), entity),
      top: true,
      fixed: [{ attr: U.entity, value: entity }, ttl(period.endMs)],
      delta,
    });
  }
  return rows;
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
  if (row.top) {
    let denied = 0n;
    for (const value of row.delta.denied.values()) denied += value;
    add(U.deniedTotal, denied);
  } else {
    for (const [name, value] of row.delta.denied) add(U.denied(name), value);
  }
  return adds.length === 0 ? [] : [...row.fixed, ...adds];
}
