/** adjust: the call's actual usage so far (totals). */
import middy from '@middy/core';
import { adjust } from '@sluice/core/internal';
import { settleBody } from './http/bodies.js';
import { edge, type JsonEvent, parse, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime, prefetch } from './runtime.js';
import { adjustRequest } from './schemas.js';
import { callerCheck } from './scopes.js';

prefetch('settle'); // in the container's init, beside the rest of its start

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'adjust' }))
  .handler(async (event) => {
    const body = parse(adjustRequest, event.parsedBody);
    const result = await adjust(getRuntime().engine, body.lease_id, body.usage, {
      authorize: callerCheck(principalOf(event)),
      signal: event.deadline,
    });
    return json(200, settleBody(body.lease_id, result));
  });
