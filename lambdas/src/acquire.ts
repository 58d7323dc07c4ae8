/** acquire: may this call go ahead? */
import middy from '@middy/core';
import {
  type AcquireResult,
  acquire,
  beforeDeadline,
  PolicyRefusal,
  planFallbacks,
  ValidationError,
} from '@sluice/core';
import { limitsBody, refusalName, shadowBody, violationsBody } from './http/bodies.js';
import { edge, type JsonEvent, parse, principalOf } from './http/edge.js';
import { rateLimitHeaders } from './http/headers.js';
import { json, problem, type Result } from './http/problem.js';
import { DECISION_LOG } from './metric-names.js';
import { getRuntime, logger } from './runtime.js';
import { acquireRequest } from './schemas.js';
import { definitionsOf, resolve } from './scopes.js';

/** One resource tried: its refusal, and what the answer needs of it. */
interface Refused {
  readonly resource: string;
  readonly result: Extract<AcquireResult, { allowed: false }>;
  readonly definitions: ReturnType<typeof definitionsOf>;
}

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'acquire' }))
  .handler(async (event) => {
    const body = parse(acquireRequest, event.parsedBody);
    body.fallback?.forEach((resource, i, all) => {
      if (resource === body.resource || all.indexOf(resource) !== i)
        throw new ValidationError(`fallback[${i}]`, `${resource} is already tried before it`);
    });
    const { input_tokens = 0, output_tokens = 0 } = body.usage;
    logger.appendKeys({
      entity: body.entity,
      resource: body.resource,
      tokens: body.usage.tokens ?? input_tokens + output_tokens, // Contributor Insights sums it
    });
    const runtime = getRuntime();
    const policyOf = (resource: string) =>
      resolve({ ...body, resource, principal: principalOf(event) });
    // The requested resource's policy is resolved while the plan's fallbacks are looked up:
    // on a cold cache they share their reads, so the lookup adds no round trip.
    const requested = policyOf(body.resource);
    requested.catch(() => {}); // awaited below
    const fallbacks =
      body.fallback ??
      (await beforeDeadline(
        planFallbacks(runtime.policies, body.entity, body.resource),
        event.deadline,
      ));
    // With fallbacks in play, answers name the resource they are about.
    const named = fallbacks.length > 0;
    const refused: Refused[] = [];
    let notAllowed: PolicyRefusal | undefined;

    for (const resource of [body.resource, ...fallbacks]) {
      let policy: Awaited<ReturnType<typeof resolve>>;
      try {
        const resolving = resource === body.resource ? requested : policyOf(resource);
        policy = await beforeDeadline(resolving, event.deadline);
      } catch (error) {
        // The requested resource not allowed moves on to a fallback; a fallback the caller
        // may not use (not allowed, no price for a cost limit, …) is skipped.
        const skip =
          error instanceof PolicyRefusal &&
          named &&
          (resource !== body.resource || error.code === 'resource_not_allowed');
        if (!skip) throw error;
        notAllowed ??= error;
        continue;
      }
      const { checks, context } = policy; // with the priority and price to decide at
      const result = await acquire(runtime.engine, {
        ...policy,
        usage: body.usage,
        ...(body.max_wait_ms !== undefined ? { maxWaitMs: body.max_wait_ms } : {}),
        signal: event.deadline,
      });
      // Refusals (and shadow limits' would-be refusals) go to usage history in batches.
      runtime.denials.record(context, [
        ...(result.allowed ? [] : result.violations.map(refusalName)),
        ...(result.shadowViolations ?? []).map((v) => `shadow:${refusalName(v)}`),
      ]);
      // Written by the request that finds them due, never holding its answer back (an answer
      // later than its caller's deadline would reach nobody).
      runtime.denials.flushDue().catch((error: unknown) => {
        logger.error('refusal counts not written to usage history yet', { error });
      });
      const definitions = definitionsOf(checks);
      if (result.allowed) {
        // The decision lines are the decision metrics: the construct's metric filters count them.
        logger.info(DECISION_LOG.decision, { decision: 'allowed', waitMs: result.waitMs });
        return json(
          200,
          {
            allowed: true,
            lease_id: result.leaseId,
            wait_ms: result.waitMs,
            limits: limitsBody(result.limits),
            ...shadowBody(result.shadowViolations),
            ...(named ? { resource, fell_back: resource !== body.resource } : {}),
          },
          rateLimitHeaders(result.limits, definitions),
        );
      }
      for (const v of result.violations) logger.info(DECISION_LOG.refusedBy, { limit: v.name });
      // Too large for the requested resource ever to hold: no smaller model is tried for it.
      if (result.code === 'exceeds_capacity' && resource === body.resource)
        return refusal([{ resource, result, definitions }], named);
      refused.push({ resource, result, definitions });
    }
    if (refused.length === 0) throw notAllowed; // every resource tried was not allowed
    return refusal(refused, named);
  });

/** The answer when nothing admitted: 429 if any resource was rate limited, else 422. */
function refusal(refused: readonly Refused[], named: boolean): Result {
  const limited = refused.filter((r) => r.result.code === 'rate_limited');
  const rateLimited = limited.length > 0;
  // The soonest any resource tried would admit: the caller retrying then is admitted by it.
  const wait = (r: Refused) => r.result.retryAfterMs ?? Number.POSITIVE_INFINITY;
  const { result, definitions } = (rateLimited ? limited : refused).reduce((a, b) =>
    wait(b) < wait(a) ? b : a,
  );
  // Which limits refused is in the `refused by limit` lines logged for each resource tried.
  logger.info(DECISION_LOG.decision, { decision: result.code });
  return problem(
    rateLimited ? 429 : 422,
    result.code,
    rateLimited
      ? `retry in ${result.retryAfterMs} ms`
      : 'the request is larger than a limit can ever hold',
    {
      retry_after_ms: result.retryAfterMs,
      violations: refused.flatMap((r) =>
        violationsBody(r.result.violations).map((v) =>
          named ? { ...v, resource: r.resource } : v,
        ),
      ),
      ...shadowBody(result.shadowViolations),
    },
    rateLimitHeaders(result.limits, definitions, rateLimited ? result.retryAfterMs : undefined),
  );
}
