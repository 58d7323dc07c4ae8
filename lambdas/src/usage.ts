/** usage: an entity's usage history (read only). */
import middy from '@middy/core';
import { DynamoDBAdminStore, usageHistory } from '@sluice/core';
import { beforeDeadline } from '@sluice/core/internal';
import { edge, type JsonEvent, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { parseQuery, usageQuery, usageRange } from './queries.js';
import { getRuntime, logger, type Runtime } from './runtime.js';
import { callerCheck } from './scopes.js';

/** The store usage history is read through, one per runtime (the container's, a client's). */
const stores = new WeakMap<Runtime, DynamoDBAdminStore>();

function storeOf(runtime: Runtime): DynamoDBAdminStore {
  let store = stores.get(runtime);
  if (!store) {
    store = new DynamoDBAdminStore({ client: runtime.client, tableName: runtime.env.tableName });
    stores.set(runtime, store);
  }
  return store;
}

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'usage', body: false }))
  .handler(async (event) => {
    const query = parseQuery(usageQuery, event.queryStringParameters);
    logger.appendKeys({ entity: query.entity });
    const granularity = query.granularity ?? 'day';
    // Every input checked before anything is read: from=2026-11-01&to=2026-11-30 is all of November.
    const { fromMs, toMs } = usageRange(query, granularity, Date.now());
    const runtime = getRuntime();
    await beforeDeadline(callerCheck(principalOf(event))(query.entity), event.deadline);
    const reading = usageHistory(storeOf(runtime), {
      entity: query.entity,
      granularity,
      fromMs,
      toMs,
      resource: query.resource,
    });
    const items = await beforeDeadline(reading, event.deadline);
    return json(200, { entity: query.entity, granularity, items });
  });
