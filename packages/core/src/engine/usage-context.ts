/**
 * Whom a lease's usage counts for, and how the hot path hands it to the usage aggregator without
 * a write of its own: acquire puts an event on one item it writes anyway, settlement puts the
 * context on the lease item it writes anyway (see usage/facts.ts for the reading side).
 */
import * as z from 'zod/mini';
import { identifierSchema, timeZoneSchema, type Usage, validationErrorFrom } from './limits.js';

/** The entity and its ancestors (nearest first), each with the time zone of its days and months. */
export interface UsageContext {
  readonly resource: string;
  readonly scopes: readonly { readonly entity: string; readonly timezone: string }[];
}

const usageContextSchema = z.object({
  resource: identifierSchema,
  scopes: z.array(z.object({ entity: identifierSchema, timezone: timeZoneSchema })).check(
    z.refine((scopes) => new Set(scopes.map((s) => s.entity)).size === scopes.length, {
      message: 'names an entity more than once',
    }),
  ),
});

/**
 * Checks a usage context as usage history will count it: names as the API takes them (none is the
 * deployment-wide roll-up's `*`), each entity once, real time zones. Throws a ValidationError
 * naming the field.
 */
export function checkUsageContext(context: UsageContext | undefined): void {
  if (context === undefined) return;
  const parsed = usageContextSchema.safeParse(context);
  if (!parsed.success) throw validationErrorFrom(parsed.error, 'context');
}

/** The compact form carried in lease tokens and items: `[resource, [[entity, zone?], …]]`. */
export type ContextWire = [resource: string, scopes: ([string] | [string, string])[]];

/** The compact form of a context (a time zone of UTC is left out). */
export function contextToWire(context: UsageContext): ContextWire {
  return [
    context.resource,
    context.scopes.map((s): [string] | [string, string] =>
      s.timezone === 'UTC' ? [s.entity] : [s.entity, s.timezone],
    ),
  ];
}

/** A context from its compact form. */
export function contextFromWire(wire: ContextWire): UsageContext {
  return {
    resource: wire[0],
    scopes: wire[1].map(([entity, timezone]) => ({ entity, timezone: timezone ?? 'UTC' })),
  };
}

/**
 * Version of a usage event that cancels a lease (a refused acquire gave back what it took, or
 * wrote the cancellation alone): usage history counts a lease's first cancellation after its
 * counted event, and no other (see usage/event-log.ts).
 */
export const CANCELLED = -1;

/**
 * The event an acquire leaves on the first item it writes:
 * `[lease id, 0 (or CANCELLED), acquired at, expires at, usage, context]`; a cancellation carries
 * the estimate it takes back.
 */
export type UsageEvent = [
  leaseId: string,
  version: number,
  acquiredAtMs: number,
  expiresAtMs: number,
  usage: Usage,
  context: ContextWire,
];

/** The stored text of a usage event. */
export const usageEvent = (...event: UsageEvent): string => JSON.stringify(event);
