/** POST /v1/adjust — the call's actual usage so far (totals). */
import middy from '@middy/core';
import { limitsBody } from './acquire.js';
import { edge, type JsonEvent, parse } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime } from './runtime.js';
import { adjustRequest } from './schemas.js';

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'adjust' }))
  .handler(async (event) => {
    const body = parse(adjustRequest, event.parsedBody);
    const result = await getRuntime().limiter.adjust(body.lease_id, body.usage);
    return json(200, {
      lease_id: body.lease_id,
      settled: result.settled,
      usage: result.usage,
      limits: limitsBody(result.limits),
    });
  });
