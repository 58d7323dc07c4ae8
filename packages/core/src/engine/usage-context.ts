/**
 * Whom a lease's usage counts for, and how the hot path hands it to the usage aggregator without
 * a write of its own: acquire puts an event on one item it writes anyway, settlement puts the
 * context on the lease item it writes anyway (see usage/facts.ts for the reading side).
 */
import type { Usage } from './limits.js';

/** The entity and its ancestors (nearest first), each with the time zone of its days and months. */
export interface UsageContext {
  readonly resource: string;
  readonly scopes: readonly { readonly entity: string; readonly timezone: string }[];
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

/** Version of a usage event that cancels a lease (a refused acquire gave back what it took). */
export const CANCELLED = -1;
/**
 * Version of a cancellation written alone, where no give-back could carry it: usage history
 * counts it only if the lease's event reached the stream, and once (see usage/event-log.ts).
 */
export const CANCELLED_ALONE = -2;

/**
 * The event an acquire leaves on the first item it writes:
 * `[lease id, 0 (or a cancellation's version), acquired at, expires at, usage, context]`; a cancellation carries
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
