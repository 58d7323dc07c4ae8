/** acquire: may this call go ahead? Parsed here, decided in core, answered here. */
import middy from '@middy/core';
import type { AcquireResult } from '@sluice/core';
import { acquireWithFallbacks, type Tried } from '@sluice/core/internal';
import { limitsBody, refusalName, shadowBody, violationsBody } from './http/bodies.js';
import { edge, type JsonEvent, parse, principalOf } from './http/edge.js';
import { rateLimitHeaders } from './http/headers.js';
import { json, problem, type Result } from './http/problem.js';
import { DECISION_LOG } from './metric-names.js';
import { getRuntime, logger, prefetch } from './runtime.js';
import { acquireRequest } from './schemas.js';
import { definitionsOf } from './scopes.js';
import { acquireDecided } from './telemetry.js';

/** A resource tried that refused. */
type Refused = Tried & { readonly result: Extract<AcquireResult, { allowed: false }> };
/** The resource tried that admitted. */
type Admitted = Tried & { readonly result: Extract<AcquireResult, { allowed: true }> };

prefetch('acquire'); // in the container's init, beside the rest of its start

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'acquire', decision: true }))
  .handler(async (event) => {
    const body = parse(acquireRequest, event.parsedBody);
    const { input_tokens = 0, output_tokens = 0 } = body.usage;
    logger.appendKeys({
      entity: body.entity,
      resource: body.resource,
      tokens: body.usage.tokens ?? input_tokens + output_tokens, // Contributor Insights sums it
    });
    const runtime = getRuntime();
    const outcome = await acquireWithFallbacks(runtime.engine, runtime.policies, {
      entity: body.entity,
      resource: body.resource,
      usage: body.usage,
      ...(body.limits ? { inline: body.limits } : {}),
      ...(body.priority !== undefined ? { priority: body.priority } : {}),
      ...(body.batch ? { batch: true } : {}),
      ...(body.fallback ? { fallback: body.fallback } : {}),
      ...(body.max_wait_ms !== undefined ? { maxWaitMs: body.max_wait_ms } : {}),
      principal: principalOf(event),
      signal: event.deadline,
    });
    for (const { policy, result } of outcome.tried) {
      // Refusals (and shadow limits' would-be refusals) go to usage history in batches.
      runtime.denials.record(policy.context, [
        ...(result.allowed ? [] : result.violations.map(refusalName)),
        ...(result.shadowViolations ?? []).map((v) => `shadow:${refusalName(v)}`),
      ]);
      if (!result.allowed)
        for (const v of result.violations) logger.info(DECISION_LOG.refusedBy, { limit: v.name });
    }
    // Written by the request that finds them due, never holding its answer back (an answer
    // later than its caller's deadline would reach nobody).
    runtime.denials.flushDue().catch((error: unknown) => {
      logger.error('refusal counts not written to usage history yet', { error });
    });
    await acquireDecided(body.entity, outcome.tried); // waits only while the API loads
    const admitted = outcome.tried.find((t): t is Admitted => t.result.allowed);
    if (admitted) return admission(admitted, body.resource, outcome.fallbacksInPlay);
    const refused = refusal(outcome.tried as readonly Refused[], outcome.fallbacksInPlay);
    event.refusalCode = refused.code;
    return refused.result;
  });

/** The answer to an admission; with fallbacks in play it names the resource admitted. */
function admission(
  { resource, policy, result }: Admitted,
  requested: string,
  fallbacksInPlay: boolean,
) {
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
      ...(fallbacksInPlay ? { resource, fell_back: resource !== requested } : {}),
    },
    rateLimitHeaders(result.limits, definitionsOf(policy.checks)),
  );
}

/** The answer when nothing admitted: 429 if any resource was rate limited, else 422. */
function refusal(
  refused: readonly Refused[],
  fallbacksInPlay: boolean,
): { readonly result: Result; readonly code: string } {
  const limited = refused.filter((r) => r.result.code === 'rate_limited');
  const rateLimited = limited.length > 0;
  // The soonest any resource tried would admit: the caller retrying then is admitted by it.
  const wait = (r: Refused) => r.result.retryAfterMs ?? Number.POSITIVE_INFINITY;
  const { result, policy } = (rateLimited ? limited : refused).reduce((a, b) =>
    wait(b) < wait(a) ? b : a,
  );
  // Which limits refused is in the `refused by limit` lines logged for each resource tried.
  logger.info(DECISION_LOG.decision, { decision: result.code });
  const answer = problem(
    rateLimited ? 429 : 422,
    result.code,
    rateLimited
      ? `retry in ${result.retryAfterMs} ms`
      : 'the request is larger than a limit can ever hold',
    {
      retry_after_ms: result.retryAfterMs,
      violations: refused.flatMap((r) =>
        violationsBody(r.result.violations).map((v) =>
          fallbacksInPlay ? { ...v, resource: r.resource } : v,
        ),
      ),
      ...shadowBody(result.shadowViolations),
    },
    rateLimitHeaders(
      result.limits,
      definitionsOf(policy.checks),
      rateLimited ? result.retryAfterMs : undefined,
    ),
  );
  return { result: answer, code: result.code };
}
