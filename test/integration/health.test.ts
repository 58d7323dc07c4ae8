/**
 * What health says of usage history, from the progress item the stream reader keeps: `failing`
 * while its reads keep failing (the SDK's own exception, thrown by the real Streams client), `ok`
 * with a lag once it has recovered, and `behind` while the last batch it counted was old. The
 * health handler is the one Lambda runs, on the same table.
 */
import { TrimmedDataAccessException } from '@aws-sdk/client-dynamodb-streams';
import { itemKeys, parseLimits, UsageAggregator, usageHistory } from '@sluice/core';
import { UsageProgress, usageKeys } from '@sluice/core/internal';
import { type StreamReader, startStreamReader } from '@sluice/local';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { iamEvent } from '../support/events.js';
import { FaultyStreams } from '../support/faulty-streams.js';
import { freshTable, handlerEnvironment, type TestTable } from '../support/table.js';

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

const WAIT = { timeout: 30_000, interval: 50 };
const MINUTE = 60_000;

let table: TestTable;
let health: Handler;
beforeAll(async () => {
  table = await freshTable('health');
  handlerEnvironment(table);
  // As the local server loads it: the route table names the handler's file.
  const { routes } = await import('@sluice/lambdas/routes');
  const route = routes.find((r) => r.function === 'health');
  ({ handler: health } = (await import(route?.entry.href ?? '')) as { handler: Handler });
});

const readers: StreamReader[] = [];
afterEach(async () => {
  await Promise.all(readers.splice(0).map((r) => r.stop()));
});

interface UsageHistoryHealth {
  status: string;
  lag_ms: number | null;
  counted_at: string | null;
  failing_since: string | null;
  error: string | null;
}

async function healthNow(): Promise<{ status: number; body: Record<string, unknown> }> {
  const context = { awsRequestId: 'req-h', getRemainingTimeInMillis: () => 10_000 } as Context;
  const answer = await health(iamEvent({ method: 'GET', path: '/v1/health' }), context);
  return { status: answer.statusCode ?? 0, body: JSON.parse(answer.body ?? '{}') };
}

const usageHistoryNow = async () => (await healthNow()).body.usage_history as UsageHistoryHealth;

/** Writes of the progress item so far, and batches handed over. */
let progressWrites = 0;
let batches = 0;

/** A reader on the table, counting with the real aggregator and recording its progress. */
async function startReader(streams: FaultyStreams, clock: () => number = Date.now) {
  const errors: unknown[] = [];
  const progressKey = usageKeys.progress();
  const reader = await startStreamReader({
    client: table.client,
    streams,
    tableName: table.tableName,
    apply: async (changes) => {
      await new UsageAggregator({ store: table.store }).apply(changes);
      batches++;
    },
    onError: (error) => errors.push(error),
    progress: new UsageProgress({
      store: {
        update: (update) => {
          if (update.key.pk === progressKey.pk) progressWrites++;
          return table.store.update(update);
        },
      },
      clock,
    }),
  });
  readers.push(reader);
  return { reader, errors };
}

let settledTokens = 0;
async function settleOne(tokens: number): Promise<void> {
  const limiter = table.limiter();
  const lease = await limiter.acquire({
    checks: [
      {
        scope: 'entity',
        key: itemKeys.entityBucket('key-health', 'm'),
        limits: parseLimits([{ name: 'tpd', metric: 'tokens', limit: 1_000_000, per: 'day' }]),
      },
    ],
    usage: { tokens: 1_000 },
    context: { resource: 'm', scopes: [{ entity: 'key-health', timezone: 'UTC' }] },
  });
  if (!lease.allowed) throw new Error('refused');
  await limiter.release(lease.leaseId, { tokens });
  settledTokens += tokens;
}

async function countedTokens(): Promise<number> {
  const rows = await usageHistory(table.store, {
    entity: 'key-health',
    granularity: 'day',
    fromMs: Date.now() - 2 * 86_400_000,
    toMs: Date.now() + 86_400_000,
  });
  return rows.reduce((sum, row) => sum + (row.usage.tokens ?? 0), 0);
}

describe('health, on usage history', () => {
  it('says failing while the stream reader keeps failing, and ok with a lag once it recovers', async () => {
    const streams = new FaultyStreams(inject('dynamoEndpoint'));
    const { errors } = await startReader(streams);
    await settleOne(300);
    await expect.poll(usageHistoryNow, WAIT).toMatchObject({ status: 'ok', failing_since: null });

    const heal = streams.failAll(
      'GetRecords',
      () => new TrimmedDataAccessException({ message: 'x', $metadata: {} }),
    );
    await settleOne(200); // not counted while it fails
    await expect
      .poll(usageHistoryNow, WAIT)
      .toMatchObject({ status: 'failing', error: 'TrimmedDataAccessException' });
    const failing = await healthNow();
    // The reader goes on failing; `failing_since` stays when it began.
    const seen = errors.length;
    await expect.poll(() => errors.length, WAIT).toBeGreaterThanOrEqual(seen + 2);
    const still = await usageHistoryNow();

    heal();

    await expect.poll(usageHistoryNow, WAIT).toMatchObject({ status: 'ok', error: null });
    const recovered = await usageHistoryNow();
    expect(failing.status).toBe(200);
    expect(failing.body.status).toBe('ok'); // the table answers: the contract stands
    expect(still.failing_since).toBe(
      (failing.body.usage_history as UsageHistoryHealth).failing_since,
    );
    expect(recovered).toMatchObject({ failing_since: null, lag_ms: expect.any(Number) });
    expect(Date.parse(recovered.counted_at ?? '')).toBeGreaterThan(0);
    await expect.poll(countedTokens, WAIT).toBe(settledTokens);
  });

  it('says behind while the last batch counted was old, and ok once the reader has caught up', async () => {
    // A reader whose clock is ten minutes ahead: every record it reads looks ten minutes old.
    const streams = new FaultyStreams(inject('dynamoEndpoint'));
    let reads = 0;
    const second = streams.fail('GetRecords', undefined, () => ++reads === 2); // held after one batch
    await settleOne(100);
    await startReader(streams, () => Date.now() + 10 * MINUTE);
    await expect.poll(() => second.held, WAIT).toBe(true);

    const behind = await usageHistoryNow();
    second.release();

    expect(behind.status).toBe('behind');
    expect(behind.lag_ms).toBeGreaterThan(8 * MINUTE);
    await expect.poll(usageHistoryNow, WAIT).toMatchObject({ status: 'ok', lag_ms: 0 });
  });

  it('writes its progress once a batch at most, and not again for its own write or while idle', async () => {
    const { reader } = await startReader(new FaultyStreams(inject('dynamoEndpoint')));
    await reader.drain(); // the backlog of the tests before
    const [writesBefore, batchesBefore] = [progressWrites, batches];

    await settleOne(50);
    await expect.poll(countedTokens, WAIT).toBe(settledTokens);
    await reader.drain();
    const [writesAfter, batchesAfter] = [progressWrites, batches];
    await reader.drain(); // would never come, were its own write to set off another
    await reader.drain();

    expect(writesAfter - writesBefore).toBeGreaterThanOrEqual(1);
    expect(writesAfter - writesBefore).toBeLessThanOrEqual(batchesAfter - batchesBefore);
    expect(progressWrites).toBe(writesAfter);
  });
});
