/**
 * Request and response schemas of HTTP API v1 — the one source of truth. Handlers validate
 * with them; `npm run openapi` turns them into docs/openapi.json.
 */
import { identifierSchema, limitsSchema, MAX_LEASE_ID_LENGTH, usageSchema } from '@sluice/core';
import * as z from 'zod/mini';

const leaseId = z.string().check(z.minLength(1), z.maxLength(MAX_LEASE_ID_LENGTH));

export const acquireRequest = z.strictObject({
  entity: identifierSchema,
  resource: identifierSchema,
  usage: usageSchema,
  limits: z.optional(limitsSchema),
  max_wait_ms: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(600_000))),
  priority: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(100))),
});

export const adjustRequest = z.strictObject({ lease_id: leaseId, usage: usageSchema });

export const releaseRequest = z.strictObject({ lease_id: leaseId, usage: z.optional(usageSchema) });

export const availableRequest = z.strictObject({
  entity: identifierSchema,
  resource: identifierSchema,
  usage: z.optional(usageSchema),
  limits: z.optional(limitsSchema),
});

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

export const healthResponse = z.object({ status: z.literal('ok') });

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

export type AcquireRequest = z.infer<typeof acquireRequest>;
