/**
 * The aggregator as Lambda invokes it: a DynamoDB stream event (records as the Streams API
 * returns them), delivered twice, and a batch with a record it cannot read.
 */

import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from '@aws-sdk/client-dynamodb-streams';
import { itemKeys, parseLimits, usageHistory } from '@sluice/core';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { localStreams } from '../support/streams.js';
import { freshTable, handlerEnvironment, type TestTable } from '../support/table.js';

type Handler = (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse>;
let handler: Handler;
let table: TestTable;

beforeAll(async () => {
  table = await freshTable('aggregator-handler');
  handlerEnvironment(table);
  ({ handler } = (await import('@sluice/lambdas/aggregator')) as { handler: Handler });
});

/** Every record of the table's stream, as the event source mapping hands them to Lambda. */
async function streamEvent(): Promise<DynamoDBStreamEvent> {
  const streams = localStreams();
  const { Table } = await table.client.send(
    new DescribeTableCommand({ TableName: table.tableName }),
  );
  const StreamArn = Table?.LatestStreamArn;
  const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn }));
  const records: DynamoDBStreamEvent['Records'] = [];
  for (const shard of StreamDescription?.Shards ?? []) {
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
      records.push(...(out.Records as unknown as DynamoDBStreamEvent['Records']));
      ShardIterator = out.NextShardIterator;
    }
  }
  return { Records: records };
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

    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect(await totals()).toEqual([[{ tokens: 3_000, requests: 3 }, 3]]);
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
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
    const answer = await handler({ Records: [first, broken] });
    expect(answer.batchItemFailures).toEqual([{ itemIdentifier: first.dynamodb.SequenceNumber }]);
  });
});
