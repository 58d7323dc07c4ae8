/** usage: an entity's usage history (read only). */
import middy from '@middy/core';
import {
  beforeDeadline,
  DynamoDBAdminStore,
  PERIOD_SECONDS,
  usageHistory,
  ValidationError,
} from '@sluice/core';
import { edge, type JsonEvent, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { parseQuery, usageQuery } from './queries.js';
import { getRuntime, logger } from './runtime.js';
import { callerCheck } from './scopes.js';

const DAY_MS = PERIOD_SECONDS.day * 1_000;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
/** How far back `from` defaults to, per granularity. */
const DEFAULT_RANGE_MS = { hour: DAY_MS, day: 31 * DAY_MS, month: 366 * DAY_MS } as const;

let store: DynamoDBAdminStore | undefined;

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'usage', body: false }))
  .handler(async (event) => {
    const query = parseQuery(usageQuery, event.queryStringParameters);
    logger.appendKeys({ entity: query.entity });
    const granularity = query.granularity ?? 'day';
    // A date alone as `to` includes that day: from=2026-11-01&to=2026-11-30 is all of November.
    const toMs = !query.to
      ? Date.now()
      : Date.parse(query.to) + (DATE_ONLY.test(query.to) ? DAY_MS : 0);
    const fromMs = query.from ? Date.parse(query.from) : toMs - DEFAULT_RANGE_MS[granularity];
    if (!query.to && fromMs >= toMs) throw new ValidationError('from', 'must be in the past');
    const runtime = getRuntime();
    await beforeDeadline(callerCheck(principalOf(event))(query.entity), event.deadline);
    store ??= new DynamoDBAdminStore({ client: runtime.client, tableName: runtime.env.tableName });
    const reading = usageHistory(store, {
      entity: query.entity,
      granularity,
      fromMs,
      toMs,
      resource: query.resource,
    });
    const items = await beforeDeadline(reading, event.deadline);
    return json(200, { entity: query.entity, granularity, items });
  });
