/**
 * Response schemas of HTTP API v1, client and admin routes, for docs/openapi.json. Handlers
 * build their answers in http/bodies.ts; these live apart from schemas.ts so that handler
 * bundles leave them out (zod schemas are built when their module loads).
 *
 * Their types (the `…Body` types at the end) are the SDK's wire types: @sluice/client imports
 * them as types only, so nothing of this module reaches its bundle.
 */
import type { AcquireResult, SluiceErrorCode } from '@sluice/core';
import { usageSchema } from '@sluice/core/internal';
import * as z from 'zod/mini';
import type { HttpProblemCode } from './errors.js';
import { STATUS_OF } from './http/problem.js';

export const limitStatus = z.object({
  scope: z.string(),
  name: z.string(),
  metric: z.string(),
  limit: z.number(),
  /** Negative while the limit is in debt (headers show 0). */
  remaining: z.number(),
  reset_ms: z.number(),
});

const violationShape = {
  scope: z.string(),
  name: z.string(),
  metric: z.string(),
  limit: z.number(),
  remaining: z.number(),
  requested: z.number(),
  /** null when the request can never fit this limit. */
  retry_after_ms: z.nullable(z.number()),
};

export const violation = z.object(violationShape);

/** A violation of a refusal (429, 422): with the `resource` it is about when fallbacks were in play. */
export const refusedViolation = z.object({
  ...violationShape,
  resource: z.optional(z.string()),
});

export const acquireAllowed = z.object({
  allowed: z.literal(true),
  lease_id: z.string(),
  wait_ms: z.number(),
  limits: z.array(limitStatus),
  /** Shadow limits that would have refused; present when any shadow limit applies (also on a 429). */
  shadow_violations: z.optional(z.array(violation)),
  /** With fallbacks in play (the request's or the plan's): the resource admitted, to call. */
  resource: z.optional(z.string()),
  /** With fallbacks in play: whether `resource` is a fallback rather than the one asked for. */
  fell_back: z.optional(z.boolean()),
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

/** The edge's own refusals (content type, size, routing) and the engine's (rate, capacity). */
const EDGE_AND_ENGINE_CODES: Record<
  HttpProblemCode | Extract<AcquireResult, { allowed: false }>['code'],
  true
> = {
  unsupported_media_type: true,
  payload_too_large: true,
  not_found: true,
  method_not_allowed: true,
  rate_limited: true,
  exceeds_capacity: true,
};

/**
 * Every code a problem may carry: @sluice/core's (each has its status in STATUS_OF), the edge's
 * and the engine's. A new code of either has its place here, or this does not compile.
 */
export const PROBLEM_CODES = [
  ...new Set([...Object.keys(STATUS_OF), ...Object.keys(EDGE_AND_ENGINE_CODES)]),
] as [ProblemCode, ...ProblemCode[]];

/** A problem's `code`. */
export type ProblemCode = SluiceErrorCode | keyof typeof EDGE_AND_ENGINE_CODES;

/** RFC 9457 problem details, with a stable `code`. */
export const problem = z.object({
  /** `urn:sluice:problem:<code>`. */
  type: z.string().check(z.regex(/^urn:sluice:problem:[a-z_]+$/)),
  /** The status's reason phrase (RFC 9110). */
  title: z.string(),
  status: z.number().check(z.int()),
  code: z.enum(PROBLEM_CODES),
  /** What was wrong, for a person (a 5xx says only "internal error" or that the store cannot be reached). */
  detail: z.string(),
  /** 400: the field that is wrong (`limits[1].burst`, `fallback[0]`, `body`). */
  field: z.optional(z.string()),
  /** 429: when to retry; a 422 `exceeds_capacity`: null (it never fits as asked); 503: when to try again. */
  retry_after_ms: z.optional(z.nullable(z.number())),
  /** 429 and a 422 `exceeds_capacity`: the limits that refused, each resource's when fallbacks were in play. */
  violations: z.optional(z.array(refusedViolation)),
  /** 429 and 422 of acquire: shadow limits that would have refused too. */
  shadow_violations: z.optional(z.array(violation)),
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
  /** The document before (null: none), or what a reset cleared or a rotation replaced. */
  before: z.nullable(z.record(z.string(), z.unknown())),
  /** The document after (null: deleted, or reset), or the rotation's new key ids. */
  after: z.nullable(z.record(z.string(), z.unknown())),
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
  /**
   * Whether these are exactly the top entities with their figures. A period with more entities
   * than its boards hold may not be: then `error_bound` is the most a listed figure of the
   * metric may be off by, and the most an entity not listed may have of it (0 when exact).
   */
  exact: z.boolean(),
  error_bound: z.number(),
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

/** A limit's status as answered. */
export type LimitStatusBody = z.output<typeof limitStatus>;
/** A violation as answered (a shadow limit's). */
export type ViolationBody = z.output<typeof violation>;
/** A violation of a refusal as answered. */
export type RefusedViolationBody = z.output<typeof refusedViolation>;
/** Acquire's 200. */
export type AcquireAllowedBody = z.output<typeof acquireAllowed>;
/** Adjust's and release's 200. */
export type SettleBody = z.output<typeof settleResponse>;
/** Available's 200. */
export type AvailableBody = z.output<typeof availableResponse>;
/** Health's 200. */
export type HealthBody = z.output<typeof healthResponse>;
/** Every problem+json answer. */
export type ProblemBody = z.output<typeof problem>;
/** A stored document, as the admin routes answer it. */
export type StoredConfigBody = z.output<typeof storedConfig>;
/** A page of stored documents. */
export type StoredConfigPageBody = z.output<typeof storedConfigPage>;
/** An entity reset's 200. */
export type ResetBody = z.output<typeof resetResponse>;
/** A signing key rotation's 200. */
export type RotationBody = z.output<typeof rotationResponse>;
/** A page of the audit trail. */
export type AuditPageBody = z.output<typeof auditPage>;
/** Usage history's 200. */
export type UsageBody = z.output<typeof usageResponse>;
/** Top entities' 200. */
export type TopBody = z.output<typeof topResponse>;
/** A page of budget alerts. */
export type AlertsPageBody = z.output<typeof alertsPage>;
