/**
 * Response schemas of HTTP API v1, client and admin routes, for docs/openapi.json. Handlers
 * build their answers in http/bodies.ts; these live apart from schemas.ts so that handler
 * bundles leave them out (zod schemas are built when their module loads).
 */
import { usageSchema } from '@sluice/core';
import * as z from 'zod/mini';

export const limitStatus = z.object({
  scope: z.string(),
  name: z.string(),
  metric: z.string(),
  limit: z.number(),
  /** Negative while the limit is in debt (headers show 0). */
  remaining: z.number(),
  reset_ms: z.number(),
});

export const violation = z.object({
  scope: z.string(),
  name: z.string(),
  metric: z.string(),
  limit: z.number(),
  remaining: z.number(),
  requested: z.number(),
  retry_after_ms: z.nullable(z.number()),
});

export const acquireAllowed = z.object({
  allowed: z.literal(true),
  lease_id: z.string(),
  wait_ms: z.number(),
  limits: z.array(limitStatus),
  /** Shadow limits that would have refused; present when any shadow limit applies (also on a 429). */
  shadow_violations: z.optional(z.array(violation)),
});

export const settleResponse = z.object({
  lease_id: z.string(),
  settled: z.boolean(),
  usage: usageSchema,
  limits: z.array(limitStatus),
});

export const availableResponse = z.object({
  limits: z.array(limitStatus),
  /** 0 when the usage fits now; null when it never can. */
  retry_after_ms: z.nullable(z.number()),
});

/** How usage history (the aggregator on the table's stream) stands. */
export const usageHistoryHealth = z.object({
  /** `failing`: its last attempt failed; `behind`: its lag is over `SERVICE_DEFAULTS.usageBehindMs`. */
  status: z.enum(['ok', 'behind', 'failing']),
  /** How old, at least, the oldest record of the last batch counted was (0: caught up); null: none yet. */
  lag_ms: z.nullable(z.number()),
  /** When it last counted (ISO 8601); null: never. */
  counted_at: z.nullable(z.string()),
  /** Since when it has been failing (ISO 8601); null while it is not. */
  failing_since: z.nullable(z.string()),
  /** What failed last (an error name, e.g. `ECONNREFUSED`), while failing. */
  error: z.nullable(z.string()),
});

/** `status` is `ok` whenever the table answers; `usage_history` says how counting stands. */
export const healthResponse = z.object({
  status: z.literal('ok'),
  usage_history: usageHistoryHealth,
});

/** RFC 9457 problem details, with a stable `code`. */
export const problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number(),
  code: z.string(),
  detail: z.optional(z.string()),
  field: z.optional(z.string()),
  retry_after_ms: z.optional(z.nullable(z.number())),
  violations: z.optional(z.array(violation)),
});

/** A stored configuration document and who changed it last. */
export const storedConfig = z.object({
  kind: z.enum(['plan', 'entity', 'resource', 'settings']),
  name: z.string(),
  config: z.record(z.string(), z.unknown()),
  updated_at: z.optional(z.string()),
  updated_by: z.optional(z.string()),
  version: z.number(),
  /** On PUT: false when the stored document was already equal (nothing written, no audit). */
  changed: z.optional(z.boolean()),
});

/** A page of a listing; pass `next` as `?cursor=` for the page after (null: the last page). */
export const storedConfigPage = z.object({
  items: z.array(storedConfig),
  next: z.nullable(z.string()),
});

/** `cleared`: how many bucket items were deleted. */
export const resetResponse = z.object({ entity: z.string(), cleared: z.number() });

export const rotationResponse = z.object({
  /** Id of the key that signs from now on. */
  current: z.string(),
  /** Id of the key it replaced (verifies the leases it signed until they expire). */
  previous: z.nullable(z.string()),
  /** Ids of retired keys removed by this rotation. */
  removed: z.array(z.string()),
});

export const auditEntry = z.object({
  id: z.string(),
  at: z.string(),
  /** The caller's IAM principal ARN, or `local`. */
  who: z.string(),
  action: z.enum(['put', 'delete', 'reset', 'rotate']),
  kind: z.enum(['plan', 'entity', 'resource', 'settings', 'signing_key']),
  name: z.string(),
  before: z.unknown(),
  after: z.unknown(),
});

export const auditPage = z.object({ items: z.array(auditEntry), next: z.nullable(z.string()) });

const counts = z.record(z.string(), z.number());

export const usageResponse = z.object({
  entity: z.string(),
  granularity: z.enum(['hour', 'day', 'month']),
  items: z.array(
    z.object({
      /** Start of the period (ISO 8601 UTC): an hour, or a day or month in the entity's time zone. */
      period_start: z.string(),
      /** The resource, or `*` for all of the entity's resources together. */
      resource: z.string(),
      usage: counts,
      leases: z.number(),
      /** Refusals by limit name (`scope.name` for other scopes; `shadow:` for shadow limits). */
      denied: counts,
    }),
  ),
});

export const topResponse = z.object({
  period: z.enum(['day', 'month']),
  date: z.string(),
  metric: z.string(),
  by: z.enum(['usage', 'denied']),
  items: z.array(
    z.object({ entity: z.string(), usage: counts, leases: z.number(), denied: z.number() }),
  ),
});

export const alertsPage = z.object({
  items: z.array(
    z.object({
      entity: z.nullable(z.string()),
      resource: z.nullable(z.string()),
      limit: z.string(),
      window: z.string(),
      threshold: z.number(),
      used: z.number(),
      limit_value: z.number(),
      at: z.string(),
      delivered: z.boolean(),
    }),
  ),
  next: z.nullable(z.string()),
});
