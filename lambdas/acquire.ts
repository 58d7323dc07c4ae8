/** acquire: may this call go ahead? */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import middy from '@middy/core';
import { acquire } from '@sluice/core';
import { limitsBody, violationsBody } from './http/bodies.js';
import { edge, type JsonEvent, parse } from './http/edge.js';
import { rateLimitHeaders } from './http/headers.js';
import { json, problem, type Result } from './http/problem.js';
import { METRICS } from './metric-names.js';
import { getRuntime, logger, metrics } from './runtime.js';
import { acquireRequest } from './schemas.js';
import { definitionsOf, resolve } from './scopes.js';

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'acquire' }))
  .handler(async (event) => {
    const body = parse(acquireRequest, event.parsedBody);
    logger.appendKeys({ entity: body.entity, resource: body.resource });
    const { checks, priority, price } = await resolve(body);
    const result = await acquire(getRuntime().engine, {
      checks,
      usage: body.usage,
      ...(body.max_wait_ms !== undefined ? { maxWaitMs: body.max_wait_ms } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(price ? { price } : {}),
    });
    const definitions = definitionsOf(checks);
    metrics.addMetric(METRICS.decisions, MetricUnit.Count, 1);
    if (result.allowed) {
      logger.info('decision', { decision: 'allowed', waitMs: result.waitMs });
      return json(
        200,
        {
          allowed: true,
          lease_id: result.leaseId,
          wait_ms: result.waitMs,
          limits: limitsBody(result.limits),
        },
        rateLimitHeaders(result.limits, definitions),
      );
    }
    logger.info('decision', {
      decision: result.code,
      violations: result.violations.map((v) => v.name),
    });
    metrics.addMetric(METRICS.denials, MetricUnit.Count, 1);
    for (const v of result.violations) {
      const single = metrics.singleMetric();
      single.addDimension(METRICS.limitDimension, v.name);
      single.addMetric(METRICS.denialsByLimit, MetricUnit.Count, 1);
    }
    const extras = {
      retry_after_ms: result.retryAfterMs,
      violations: violationsBody(result.violations),
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
