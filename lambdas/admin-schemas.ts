/**
 * Response schemas of the admin routes (request bodies are @sluice/core's configuration
 * schemas). Apart from schemas.ts so client-route bundles leave them out.
 */
import * as z from 'zod/mini';

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

export const auditEntry = z.object({
  id: z.string(),
  at: z.string(),
  /** The caller's IAM principal ARN, or `local`. */
  who: z.string(),
  action: z.enum(['put', 'delete', 'reset']),
  kind: z.enum(['plan', 'entity', 'resource', 'settings']),
  name: z.string(),
  before: z.unknown(),
  after: z.unknown(),
});

export const auditPage = z.object({ items: z.array(auditEntry), next: z.nullable(z.string()) });
