/**
 * health: 200 when the API can reach its table, and how usage history stands: the usage
 * aggregator's progress item (one more read), as the aggregator (in AWS) or the local stream
 * reader recorded it.
 */
import middy from '@middy/core';
import { itemKeys } from '@sluice/core';
import { beforeDeadline, usageHistoryStatus, usageKeys } from '@sluice/core/internal';
import { edge, type JsonEvent } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import { getRuntime } from './runtime.js';

/** An epoch-ms time as ISO 8601 (null: none, or not a time). */
function iso(ms: number | null): string | null {
  const date = new Date(ms ?? Number.NaN);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'health', body: false }))
  .handler(async (event) => {
    const { store } = getRuntime();
    const [, progress] = await beforeDeadline(
      Promise.all([store.get(itemKeys.health()), store.get(usageKeys.progress())]),
      event.deadline,
    );
    const usage = usageHistoryStatus(progress);
    return json(200, {
      status: 'ok',
      usage_history: {
        status: usage.status,
        lag_ms: usage.lagMs,
        counted_at: iso(usage.countedAtMs),
        failing_since: iso(usage.failingSinceMs),
        error: usage.error,
      },
    });
  });
