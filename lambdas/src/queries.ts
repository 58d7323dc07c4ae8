/**
 * Query parameter schemas of the read routes (usage history, top entities, alerts) and the
 * readers of their dates and times: apart from schemas.ts so that the acquire and settle bundles
 * leave them out (zod schemas are built when their module loads).
 */
import { ValidationError } from '@sluice/core';
import {
  identifierSchema,
  MAX_RANGE_DAYS,
  metricSchema,
  PERIOD_SECONDS,
  SERVICE_DEFAULTS,
  validationErrorFrom,
} from '@sluice/core/internal';
import * as z from 'zod/mini';

/** Validates query parameters; a bad or unknown one becomes a 400 naming it. */
export function parseQuery<T extends z.ZodMiniType>(
  schema: T,
  params: Record<string, string | undefined> | undefined,
): z.infer<T> {
  const result = schema.safeParse(params ?? {});
  if (result.success) return result.data;
  const [issue] = result.error.issues;
  if (issue?.code === 'unrecognized_keys')
    throw new ValidationError(String(issue.keys[0]), 'unknown query parameter');
  throw validationErrorFrom(result.error, '');
}

/**
 * The years a date or instant of a query may fall in (UTC): usage keys hold ISO 8601 times, which
 * sort as text only with four-digit years, and nothing is counted before 2000.
 */
export const QUERY_YEARS = { first: 2000, last: 2999 } as const;

const EARLIEST_MS = Date.UTC(QUERY_YEARS.first, 0, 1);
const END_MS = Date.UTC(QUERY_YEARS.last + 1, 0, 1);
const IN_RANGE = `from ${QUERY_YEARS.first}-01-01 to ${QUERY_YEARS.last}-12-31`;

/** A date, or a date and time (seconds and fraction optional) with an optional UTC offset. */
const INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const INSTANT_FORMAT =
  'must be an ISO 8601 date or date-time, e.g. 2026-11-01 or 2026-11-01T09:00:00Z';

/** An instant read from a query; `dateOnly` when it was a date alone (midnight UTC). */
export type Reading =
  | { readonly ok: true; readonly ms: number; readonly dateOnly: boolean }
  | { readonly ok: false; readonly message: string };

const refused = (message: string): Reading => ({ ok: false, message });

/** Minutes east of UTC of an offset (`Z`, `+05:30`, `-0800`), or undefined if it is none. */
function offsetMinutes(offset: string | undefined): number | undefined {
  if (offset === undefined || offset === 'Z') return 0;
  const [hours, minutes] = [Number(offset.slice(1, 3)), Number(offset.slice(-2))];
  if (hours > 23 || minutes > 59) return undefined;
  return (offset.startsWith('-') ? -1 : 1) * (hours * 60 + minutes);
}

/**
 * Reads a date or instant of a query: an ISO 8601 date (midnight UTC) or date-time (UTC without
 * an offset). It must exist in the calendar (no 2026-02-30, no 24:00) and fall in
 * {@link QUERY_YEARS}; otherwise the answer says why.
 *
 * @example
 * readInstant('2026-11-01T09:00:00+01:00'); // { ok: true, ms: Date.parse('2026-11-01T08:00:00Z'), dateOnly: false }
 * readInstant('2026-02-30'); // { ok: false, message: 'not a calendar date: 2026-02-30' }
 */
export function readInstant(text: string): Reading {
  const match = INSTANT.exec(text);
  if (!match) return refused(INSTANT_FORMAT);
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', offset] = match;
  const [year, month, day] = [Number(y), Number(mo), Number(d)];
  const [hour, minute, second] = [Number(h), Number(mi), Number(s)];
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day); // never read as 19xx, as Date.UTC reads years 0 to 99
  if (at.getUTCFullYear() !== year || at.getUTCMonth() !== month - 1 || at.getUTCDate() !== day)
    return refused(`not a calendar date: ${text.slice(0, 10)}`);
  if (hour > 23 || minute > 59 || second > 59) return refused(`not a time of day: ${text}`);
  const east = offsetMinutes(offset);
  if (east === undefined) return refused(`not a UTC offset: ${offset}`);
  at.setUTCHours(hour, minute - east, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const ms = at.getTime();
  const dateOnly = match[4] === undefined;
  if (!(ms >= EARLIEST_MS && ms < END_MS))
    return refused(`out of range: ${IN_RANGE}${dateOnly ? '' : ' (UTC)'}`);
  return { ok: true, ms, dateOnly };
}

/** Reads a date alone (YYYY-MM-DD), as {@link readInstant} does. */
export function readDate(text: string): Reading {
  return DATE.test(text) ? readInstant(text) : refused('must be a date, YYYY-MM-DD');
}

/** A string query parameter that `read` accepts; `pattern` is its form (in the OpenAPI). */
const checked = (read: (text: string) => Reading, pattern: RegExp, description: string) =>
  z.string().check(
    z.superRefine((text, ctx) => {
      const reading = read(text);
      if (!reading.ok) ctx.addIssue({ code: 'custom', message: reading.message, input: text });
    }),
    z.regex(pattern), // never the first issue: the one above names what is wrong
    z.describe(description),
  );

/** An instant in query parameters: an ISO 8601 date (midnight UTC) or date and time. */
const instant = (description: string) =>
  checked(
    readInstant,
    INSTANT,
    `${description} An ISO 8601 date (midnight UTC) or date-time (UTC without an offset), ${IN_RANGE} (UTC).`,
  );

/** `?limit=` of a listing, as text. */
const pageLimit = (max: number, byDefault: number) =>
  z.string().check(
    z.refine((s) => /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= max, {
      message: `must be an integer from 1 to ${max}`,
    }),
    z.regex(/^\d+$/),
    z.describe(`How many, 1 to ${max} (default ${byDefault}).`),
  );

/** GET /v1/usage */
export const usageQuery = z.strictObject({
  entity: identifierSchema,
  /** @default "day" */
  granularity: z.optional(z.enum(['hour', 'day', 'month'])),
  /** @default `to` less a day (hour), 31 days (day) or a year (month) */
  from: z.optional(
    instant('Start of the range (default: `to` less a day, 31 days or a year, by `granularity`).'),
  ),
  /** A date alone includes that day. @default now */
  to: z.optional(
    instant('End of the range, after `from`; a date alone includes that day (default: now).'),
  ),
  /** One resource, or `*` (the default): all of them together. */
  resource: z.optional(z.union([identifierSchema, z.literal('*')])),
});

/** GET /v1/admin/usage/overview: the deployment-wide roll-up, as {@link usageQuery} reads it. */
export const overviewQuery = z.omit(usageQuery, { entity: true });

/** GET /v1/admin/usage/top */
export const topQuery = z.strictObject({
  /** @default "day" */
  period: z.optional(z.enum(['day', 'month'])),
  /** A day (YYYY-MM-DD) in the entities' own time zones; a month takes its YYYY-MM. @default today (UTC) */
  date: z.optional(
    checked(
      readDate,
      DATE,
      `A day (YYYY-MM-DD, ${IN_RANGE}) in the entities' own time zones; \`period=month\` takes its month (default: today, UTC).`,
    ),
  ),
  /** @default "cost_micro_usd" */
  metric: z.optional(metricSchema),
  /** `denied`: rank by refusals instead. @default "usage" */
  by: z.optional(z.enum(['usage', 'denied'])),
  /** @default 10 */
  limit: z.optional(pageLimit(SERVICE_DEFAULTS.maxPageSize, SERVICE_DEFAULTS.topSize)),
});

/** GET /v1/admin/alerts */
/**
 * Only this entity's items: a page then reads at most a bounded number of items, and may hold
 * fewer than `limit` (even none) with a `next` to read on.
 */
const entityFilter = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(256),
    z.describe(
      'Only this entity’s items. A page then reads at most 1,000 items: it may hold fewer than `limit` (even none) and still have a `next`.',
    ),
  );

export const alertsQuery = z.strictObject({
  limit: z.optional(pageLimit(SERVICE_DEFAULTS.maxPageSize, SERVICE_DEFAULTS.pageSize)),
  /** Checked where it is read (core's listAlerts): a 400 naming `cursor` if it is not one. */
  cursor: z.optional(z.string().check(z.describe('The `next` of the page before.'))),
  entity: z.optional(entityFilter),
});

/** The audit trail's page: as alerts'. */
export const auditQuery = alertsQuery;

const DAY_MS = PERIOD_SECONDS.day * 1_000;
/** How far back `from` defaults to, per granularity. */
const DEFAULT_RANGE_MS = { hour: DAY_MS, day: 31 * DAY_MS, month: 366 * DAY_MS } as const;

/** The instant a parameter that {@link usageQuery} passed holds; a date alone as `to` ends its day. */
function instantOf(field: 'from' | 'to', text: string): number {
  const reading = readInstant(text);
  if (!reading.ok) throw new ValidationError(field, reading.message);
  return reading.ms + (field === 'to' && reading.dateOnly ? DAY_MS : 0);
}

/**
 * The range `[fromMs, toMs)` a usage query reads: `to` (default now; a date alone includes that
 * day) and `from` (default `to` less a day, 31 days or a year, not before {@link QUERY_YEARS}),
 * `from` before `to`, at most {@link MAX_RANGE_DAYS} apart.
 *
 * @example
 * usageRange({ from: '2026-11-01', to: '2026-11-30' }, 'day', Date.now()); // all of November
 * @throws {ValidationError} naming `from` or `to`.
 */
export function usageRange(
  query: { readonly from?: string | undefined; readonly to?: string | undefined },
  granularity: keyof typeof MAX_RANGE_DAYS,
  nowMs: number,
): { fromMs: number; toMs: number } {
  const toMs = query.to === undefined ? nowMs : instantOf('to', query.to);
  const fromMs =
    query.from === undefined
      ? Math.max(EARLIEST_MS, toMs - DEFAULT_RANGE_MS[granularity])
      : instantOf('from', query.from);
  if (query.to === undefined && fromMs >= toMs)
    throw new ValidationError('from', 'must be in the past');
  if (fromMs >= toMs) throw new ValidationError('to', 'must be after from');
  const days = MAX_RANGE_DAYS[granularity];
  if (toMs - fromMs > days * DAY_MS) {
    // Named as given: `from` alone is too early for the default `to` (now).
    throw query.to === undefined
      ? new ValidationError('from', `at most ${days} days before to (now)`)
      : new ValidationError('to', `at most ${days} days after from`);
  }
  return { fromMs, toMs };
}
