/** acquire: may this call go ahead? */
import middy from '@middy/core';
import { acquire } from '@sluice/core';
import { limitsBody, refusalName, shadowBody, violationsBody } from './http/bodies.js';
import { edge, type JsonEvent, parse } from './http/edge.js';
import { rateLimitHeaders } from './http/headers.js';
import { json, problem, type Result } from './http/problem.js';
import { DECISION_LOG } from './metric-names.js';
import { getRuntime, logger } from './runtime.js';
import { acquireRequest } from './schemas.js';
import { definitionsOf, resolve } from './scopes.js';

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'acquire' }))
  .handler(async (event) => {
    const body = parse(acquireRequest, event.parsedBody);
    const { input_tokens = 0, output_tokens = 0 } = body.usage;
    logger.appendKeys({
      entity: body.entity,
      resource: body.resource,
      tokens: body.usage.tokens ?? input_tokens + output_tokens, // Contributor Insights sums it
    });
    const { checks, priority, price, context } = await resolve(body);
    const runtime = getRuntime();
    const result = await acquire(runtime.engine, {
      checks,
      usage: body.usage,
      ...(body.max_wait_ms !== undefined ? { maxWaitMs: body.max_wait_ms } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(price ? { price } : {}),
      context,
    });
    // Refusals (and shadow limits' would-be refusals) go to usage history in batches.
    runtime.denials.record(context, [
      ...(result.allowed ? [] : result.violations.map(refusalName)),
      ...(result.shadowViolations ?? []).map((v) => `shadow:${refusalName(v)}`),
    ]);
    await runtime.denials.flushDue().catch((error: unknown) => {
      logger.error('refusal counts not written to usage history yet', { error });
    });
    const definitions = definitionsOf(checks);
    // The decision lines are the decision metrics: the construct's metric filters count them.
    if (result.allowed) {
      logger.info(DECISION_LOG.decision, { decision: 'allowed', waitMs: result.waitMs });
      return json(
        200,
        {
          allowed: true,
          lease_id: result.leaseId,
          wait_ms: result.waitMs,
          limits: limitsBody(result.limits),
          ...shadowBody(result.shadowViolations),
        },
        rateLimitHeaders(result.limits, definitions),
      );
    }
    logger.info(DECISION_LOG.decision, {
      decision: result.code,
      violations: result.violations.map((v) => v.name),
    });
    for (const v of result.violations) logger.info(DECISION_LOG.refusedBy, { limit: v.name });
    const extras = {
      retry_after_ms: result.retryAfterMs,
      violations: violationsBody(result.violations),
      ...shadowBody(result.shadowViolations),
    };
    if (result.code === 'exceeds_capacity') {
      return problem(
        422,
        'exceeds_capacity',
        'the request is larger than a limit can ever hold',
        extras,
        rateLimitHeaders(result.limits, definitions),
      );
    }
    return problem(
      429,
      'rate_limited',
      `retry in ${result.retryAfterMs} ms`,
      extras,
      rateLimitHeaders(result.limits, definitions, result.retryAfterMs),
    );
  });
