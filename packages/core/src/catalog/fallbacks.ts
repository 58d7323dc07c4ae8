/**
 * An acquire as a client asks it: its policy resolved from stored configuration, then the
 * engine's decision, with the fallbacks in play. When the requested resource refuses (rate
 * limited, or not allowed), the first fallback that admits is taken in the same call: the
 * request's `fallback` list, else the entity's plan's `fallbacks` for the resource.
 *
 * The rule of a fallback, written once here: the requested resource's refusal by configuration
 * moves on only when it is `resource_not_allowed`; a fallback that the caller may not use (not
 * allowed, no price for a cost limit, …) is passed over; a request too large for the requested
 * resource ever to hold tries no smaller one (its 422 stands). Every resource tried is reported
 * with its decision, so the caller can count each refusal.
 */

import { acquire } from '../engine/acquire.js';
import { beforeDeadline } from '../engine/budget.js';
import type { EngineState } from '../engine/state.js';
import type { AcquireResult } from '../engine/types.js';
import { PolicyRefusal } from '../errors.js';
import {
  type ConfigSource,
  type Policy,
  type PolicyRequest,
  planFallbacks,
  resolvePolicy,
} from './policy.js';

/** What {@link acquireWithFallbacks} is asked. */
export interface FallbackRequest extends PolicyRequest {
  /** Resources to fall back to, in order. @default the entity's plan's `fallbacks` for `resource` */
  readonly fallback?: readonly string[] | undefined;
  readonly maxWaitMs?: number | undefined;
  /** The request's deadline (see the engine's `acquire`). */
  readonly signal?: AbortSignal | undefined;
}

/** One resource tried: its policy and the engine's decision. */
export interface Tried {
  readonly resource: string;
  readonly policy: Policy;
  readonly result: AcquireResult;
}

/** Every resource tried, in order; the last one admitted, if any did. */
export interface FallbackOutcome {
  readonly tried: readonly Tried[];
  /** Whether fallbacks were in play: answers then name the resource they are about. */
  readonly fallbacksInPlay: boolean;
}

/**
 * Acquires `request.resource`, or the first of its fallbacks that admits.
 *
 * @example
 * const outcome = await acquireWithFallbacks(engine, policies, {
 *   entity: 'key-123',
 *   resource: 'gpt-4o',
 *   usage: { input_tokens: 1_500 },
 *   fallback: ['gpt-4o-mini'],
 * });
 * const admitted = outcome.tried.find((t) => t.result.allowed);
 */
export async function acquireWithFallbacks(
  engine: EngineState,
  source: ConfigSource,
  request: FallbackRequest,
): Promise<FallbackOutcome> {
  const { signal } = request;
  engine.keys.warm(); // a cold process reads its signing keys beside the configuration
  const policyOf = (resource: string) => {
    const resolving = resolvePolicy(source, { ...request, resource });
    resolving.catch(() => {}); // awaited below, if it is tried
    return resolving;
  };
  // The plan's fallbacks are looked up while the requested resource's policy is resolved: on a
  // cold cache they share their reads, so the lookup adds no round of reads. A fallback's own
  // policy is resolved only when it is tried.
  const requested = policyOf(request.resource);
  const fallbacks =
    request.fallback ??
    (await beforeDeadline(planFallbacks(source, request.entity, request.resource), signal));
  const fallbacksInPlay = fallbacks.length > 0;
  const tried: Tried[] = [];
  let passedOver: PolicyRefusal | undefined;
  for (const resource of [request.resource, ...fallbacks]) {
    let policy: Policy;
    try {
      const resolving = resource === request.resource ? requested : policyOf(resource);
      policy = await beforeDeadline(resolving, signal);
    } catch (error) {
      if (
        !(
          error instanceof PolicyRefusal &&
          movesOn(error, resource, request.resource, fallbacksInPlay)
        )
      )
        throw error;
      passedOver ??= error;
      continue;
    }
    if (!policy.storedFits) throw tooLarge(request, resource);
    const result = await acquire(engine, {
      ...policy,
      usage: request.usage,
      ...(request.maxWaitMs !== undefined ? { maxWaitMs: request.maxWaitMs } : {}),
      signal,
    });
    tried.push({ resource, policy, result });
    if (result.allowed) break;
    // Too large for the requested resource ever to hold: no smaller model is tried for it.
    if (result.code === 'exceeds_capacity' && resource === request.resource) break;
  }
  if (tried.length === 0) throw passedOver; // every resource tried was not allowed
  return { tried, fallbacksInPlay };
}

/**
 * Whether a refusal by configuration passes on to the next resource: the requested one's only
 * when it is not allowed; a fallback's whatever it is.
 */
function movesOn(
  refusal: PolicyRefusal,
  resource: string,
  requested: string,
  fallbacksInPlay: boolean,
): boolean {
  if (!fallbacksInPlay) return false;
  return resource !== requested || refusal.code === 'resource_not_allowed';
}

/** Stored limits too many for one lease: the configuration's to mend, not the request's. */
const tooLarge = (request: FallbackRequest, resource: string) =>
  new PolicyRefusal(
    'configuration_invalid',
    `the limits stored for ${request.entity} and ${resource} are more than one lease can carry: an admin must trim them`,
  );
