/** health: 200 when the API can reach its table. */
import middy from '@middy/core';
import { itemKeys } from '@sluice/core';
import { edge, type JsonEvent } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime } from './runtime.js';

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'health', body: false }))
  .handler(async () => {
    await getRuntime().store.get(itemKeys.health());
    return json(200, { status: 'ok' });
  });
