/**
 * The aggregator as Lambda invokes it: a DynamoDB stream event (records as the Streams API
 * returns them, and the shard id a tumbling window adds), delivered twice, a batch with a record
 * it cannot read, and one that names no shard.
 */

import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from '@aws-sdk/client-dynamodb-streams';
import { itemKeys, parseLimits, usageHistory } from '@sluice/core';
import type { WindowedBatchResponse, WindowedStreamEvent } from '@sluice/lambdas/aggregator';
import { beforeAll, describe, expect, it } from 'vitest';
import { localStreams } from '../support/streams.js';
import { freshTable, handlerEnvironment, type TestTable } from '../support/table.js';

type Handler = (event: WindowedStreamEvent) => Promise<WindowedBatchResponse>;
let handler: Handler;
let table: TestTable;

beforeAll(async () => {
  table = await freshTable('aggregator-handler');
  handlerEnvironment(table);
  ({ handler } = (await import('@sluice/lambdas/aggregator')) as { handler: Handler });
});

/**
 * Every record of the table's one shard, as the event source mapping hands them to Lambda with a
 * tumbling window: the event names the shard.
 */
async function streamEvent(): Promise<WindowedStreamEvent> {
  const streams = localStreams();
  const { Table } = await table.client.send(
    new DescribeTableCommand({ TableName: table.tableName }),
  );
  const StreamArn = Table?.LatestStreamArn;
  const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn }));
  const records: WindowedStreamEvent['Records'] = [];
  const shards = StreamDescription?.Shards ?? [];
  expect(shards).toHaveLength(1);
  for (const shard of shards) {
    let { ShardIterator } = await streams.send(
      new GetShardIteratorCommand({
        StreamArn,
        ShardId: shard.ShardId,
        ShardIteratorType: 'TRIM_HORIZON',
      }),
    );
    while (ShardIterator) {
      const out = await streams.send(new GetRecordsCommand({ ShardIterator }));
      if (!out.Records?.length) break;
      records.push(...(out.Records as unknown as WindowedStreamEvent['Records']));
      ShardIterator = out.NextShardIterator;
    }
  }
  return { Records: records, shardId: String(shards[0]?.ShardId) };
}

describe('the aggregator handler', () => {
  it('counts a batch delivered twice once, and reports nothing failed', async () => {
    const limiter = table.limiter();
    const checks = [
      {
        scope: 'entity',
        key: itemKeys.entityBucket('key-h', 'm'),
        limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }]),
      },
    ];
    const context = { resource: 'm', scopes: [{ entity: 'key-h', timezone: 'UTC' }] };
    for (const tokens of [1_000, 2_000, 3_000]) {
      const lease = await limiter.acquire({ checks, usage: { tokens }, context });
      if (!lease.allowed) throw new Error('refused');
      await limiter.release(lease.leaseId, { tokens: tokens / 2 });
    }
    const event = await streamEvent();
    const totals = async () =>
      (
        await usageHistory(table.store, {
          entity: 'key-h',
          granularity: 'day',
          fromMs: Date.now() - 86_400_000,
          toMs: Date.now() + 86_400_000,
        })
      ).map((p) => [p.usage, p.leases]);

    expect(await handler(event)).toEqual({ batchItemFailures: [], state: {} });
    expect(await totals()).toEqual([[{ tokens: 3_000, requests: 3 }, 3]]);
    expect(await handler(event)).toEqual({ batchItemFailures: [], state: {} });
    expect(await totals()).toEqual([[{ tokens: 3_000, requests: 3 }, 3]]);
  });

  it('reports the batch failed from its first record when a record cannot be read', async () => {
    const event = await streamEvent();
    const first = event.Records[0];
    if (!first?.dynamodb) throw new Error('no records');
    const broken = {
      ...first,
      dynamodb: {
        ...first.dynamodb,
        Keys: { pk: { S: 'entity#key-h' }, sk: { S: 'm' } },
        NewImage: { pk: { S: 'entity#key-h' }, sk: { S: 'm' }, ev: { S: '{not json' } },
      },
    };
    const answer = await handler({ Records: [first, broken], shardId: String(event.shardId) });
    expect(answer.batchItemFailures).toEqual([{ itemIdentifier: first.dynamodb.SequenceNumber }]);
  });

  it('reports a batch that names no shard failed (its mapping has no tumbling window)', async () => {
    const { shardId: _, ...event } = await streamEvent();
    const first = event.Records[0]?.dynamodb?.SequenceNumber;
    expect(await handler(event)).toEqual({
      batchItemFailures: [{ itemIdentifier: first }],
      state: {},
    });
  });
});
