/** available: what remains, and when a usage would fit; consumes nothing. */
import middy from '@middy/core';
import { available, beforeDeadline } from '@sluice/core/internal';
import { limitsBody } from './http/bodies.js';
import { edge, type JsonEvent, parse, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime } from './runtime.js';
import { availableRequest } from './schemas.js';
import { resolve } from './scopes.js';

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'available' }))
  .handler(async (event) => {
    const body = parse(availableRequest, event.parsedBody);
    const { checks, price } = await beforeDeadline(
      resolve({ ...body, principal: principalOf(event) }),
      event.deadline,
    );
    if (checks.length === 0) return json(200, { limits: [], retry_after_ms: 0 });
    const result = await available(getRuntime().engine, {
      checks,
      ...(body.usage ? { usage: body.usage } : {}),
      ...(price ? { price } : {}),
      signal: event.deadline,
    });
    return json(200, { limits: limitsBody(result.limits), retry_after_ms: result.retryAfterMs });
  });
