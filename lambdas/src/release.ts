/** release: settle with final totals, or without usage give everything back. */
import middy from '@middy/core';
import { release } from '@sluice/core/internal';
import { settleBody } from './http/bodies.js';
import { edge, type JsonEvent, parse, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime, prefetch } from './runtime.js';
import { releaseRequest } from './schemas.js';
import { callerCheck } from './scopes.js';
import { released } from './telemetry.js';

prefetch('settle'); // in the container's init, beside the rest of its start

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'release' }))
  .handler(async (event) => {
    const body = parse(releaseRequest, event.parsedBody);
    const result = await release(getRuntime().engine, body.lease_id, body.usage, {
      authorize: callerCheck(principalOf(event)),
      signal: event.deadline,
    });
    await released(body.lease_id, result); // waits only while the API loads
    return json(200, settleBody(body.lease_id, result));
  });
