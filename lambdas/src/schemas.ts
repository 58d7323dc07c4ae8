/**
 * Request schemas of HTTP API v1 — the one source of truth. Handlers validate with them;
 * `npm run openapi` turns them (and responses.ts) into docs/openapi.json.
 */
import {
  ENGINE_DEFAULTS,
  identifierSchema,
  limitsSchema,
  MAX_FALLBACKS,
  MAX_LEASE_ID_LENGTH,
  PRIORITY,
  usageSchema,
} from '@sluice/core/internal';
import * as z from 'zod/mini';

/**
 * `true` or `false`. A zod boolean would add its own code to the acquire function's bundle (it
 * has no other boolean) for a check this small; openapi.ts declares its type.
 */
export const flagSchema = z.custom<boolean>(
  (value) => typeof value === 'boolean',
  'Invalid input: expected boolean',
);

const leaseId = z.string().check(z.minLength(1), z.maxLength(MAX_LEASE_ID_LENGTH));

/**
 * Acquire's `fallback` list: 1 to {@link MAX_FALLBACKS} resources, none repeated and none the
 * requested resource (acquireRequest checks both; openapi.ts says so).
 */
export const fallbackSchema = z
  .array(identifierSchema)
  .check(z.minLength(1), z.maxLength(MAX_FALLBACKS));

export const acquireRequest = z
  .strictObject({
    entity: identifierSchema,
    resource: identifierSchema,
    usage: usageSchema,
    limits: z.optional(limitsSchema),
    max_wait_ms: z.optional(
      z.number().check(z.int(), z.minimum(0), z.maximum(ENGINE_DEFAULTS.maxWaitMsCeiling)),
    ),
    priority: z.optional(
      z.number().check(z.int(), z.minimum(PRIORITY.min), z.maximum(PRIORITY.max)),
    ),
    /** A batch call (a provider's batch API): priced with the resource's batch discount. */
    batch: z.optional(flagSchema),
    /**
     * Resources to fall back to, in order, when `resource` refuses (rate limited, or not
     * allowed); the plan's `fallbacks` for `resource` when absent.
     */
    fallback: z.optional(fallbackSchema),
  })
  .check(
    // Each resource is tried once: a 400 names the entry tried before (as a plan's `fallbacks`).
    z.superRefine((body, ctx) => {
      body.fallback?.forEach((resource, i, all) => {
        if (resource === body.resource || all.indexOf(resource) !== i)
          ctx.addIssue({
            code: 'custom',
            path: ['fallback', i],
            message: `${resource} is already tried before it`,
          });
      });
    }),
  );

export const adjustRequest = z.strictObject({ lease_id: leaseId, usage: usageSchema });

export const releaseRequest = z.strictObject({ lease_id: leaseId, usage: z.optional(usageSchema) });

export const availableRequest = z.strictObject({
  entity: identifierSchema,
  resource: identifierSchema,
  usage: z.optional(usageSchema),
  limits: z.optional(limitsSchema),
  batch: z.optional(flagSchema),
});

export type AcquireRequest = z.infer<typeof acquireRequest>;

/** What a client sends to acquire (the SDK builds its body as this: a type, no code). */
export type AcquireRequestBody = z.input<typeof acquireRequest>;
/** What a client sends to adjust. */
export type AdjustRequestBody = z.input<typeof adjustRequest>;
/** What a client sends to release. */
export type ReleaseRequestBody = z.input<typeof releaseRequest>;
/** What a client sends to available. */
export type AvailableRequestBody = z.input<typeof availableRequest>;
