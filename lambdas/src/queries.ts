/**
 * Query parameter schemas of the read routes (usage history, top entities, alerts): apart from
 * schemas.ts so that the acquire and settle bundles leave them out (zod schemas are built when
 * their module loads).
 */
import {
  identifierSchema,
  metricSchema,
  SERVICE_DEFAULTS,
  ValidationError,
  validationErrorFrom,
} from '@sluice/core';
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

/** An instant in query parameters: an ISO 8601 date (midnight UTC) or date and time. */
const instant = z.string().check(
  z.refine(
    (s) =>
      /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) &&
      !Number.isNaN(Date.parse(s)),
    {
      message: 'must be an ISO 8601 date or date-time, e.g. 2026-11-01 or 2026-11-01T09:00:00Z',
    },
  ),
);

/** `?limit=` of a listing, as text. */
const pageLimit = (max: number) =>
  z.string().check(
    z.refine((s) => /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= max, {
      message: `must be an integer from 1 to ${max}`,
    }),
  );

/** GET /v1/usage */
export const usageQuery = z.strictObject({
  entity: identifierSchema,
  /** @default "day" */
  granularity: z.optional(z.enum(['hour', 'day', 'month'])),
  /** @default `to` less a day (hour), 31 days (day) or a year (month) */
  from: z.optional(instant),
  /** A date alone includes that day. @default now */
  to: z.optional(instant),
  /** One resource, or `*` (the default): all of them together. */
  resource: z.optional(z.union([identifierSchema, z.literal('*')])),
});

/** GET /v1/admin/usage/top */
export const topQuery = z.strictObject({
  /** @default "day" */
  period: z.optional(z.enum(['day', 'month'])),
  /** A day (YYYY-MM-DD) in the entities' own time zones; a month takes its YYYY-MM. @default today (UTC) */
  date: z.optional(
    z.string().check(
      z.refine((s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)), {
        message: 'must be a date, YYYY-MM-DD',
      }),
    ),
  ),
  /** @default "cost_micro_usd" */
  metric: z.optional(metricSchema),
  /** `denied`: rank by refusals instead. @default "usage" */
  by: z.optional(z.enum(['usage', 'denied'])),
  /** @default 10 */
  limit: z.optional(pageLimit(SERVICE_DEFAULTS.maxPageSize)),
});

/** GET /v1/admin/alerts */
export const alertsQuery = z.strictObject({
  limit: z.optional(pageLimit(SERVICE_DEFAULTS.maxPageSize)),
  cursor: z.optional(z.string()),
});
