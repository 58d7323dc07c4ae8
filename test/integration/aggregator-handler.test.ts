/**
 * The aggregator as Lambda invokes it: a DynamoDB stream event (records as the Streams API
 * returns them, and the shard id a tumbling window adds), delivered twice, a batch with a record
 * it cannot read, one that names no shard, records out of order within a batch, and
 * redeliveries split differently (as Lambda's bisection does).
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
      for (const record of out.Records) {
        // Lambda's event gives the creation time in seconds (the Streams API, a Date).
        const created = record.dynamodb?.ApproximateCreationDateTime;
        const seconds = created ? { ApproximateCreationDateTime: created.getTime() / 1_000 } : {};
        records.push({
          ...record,
          dynamodb: { ...record.dynamodb, ...seconds },
        } as unknown as WindowedStreamEvent['Records'][number]);
      }
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
    // A sequence number no stream gives (41 digits): the record cannot be counted once. (An
    // item holding what no engine writes is left out, reported unplaced: it fails nothing.)
    const counted = event.Records.find((r) => r.dynamodb?.NewImage?.ev) ?? first;
    const broken = {
      ...counted,
      dynamodb: { ...counted.dynamodb, SequenceNumber: '9'.repeat(41) },
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

const checks = (entity: string) => [
  {
    scope: 'entity' as const,
    key: itemKeys.entityBucket(entity, 'm'),
    limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 10_000_000, per: 'minute' }]),
  },
];
const totals = async (entity: string) =>
  (
    await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: Date.now() - 86_400_000,
      toMs: Date.now() + 86_400_000,
    })
  ).map((p) => [p.usage, p.leases]);

type Rec = WindowedStreamEvent['Records'][number];
const seq = (r: Rec | undefined) => String(r?.dynamodb?.SequenceNumber);

describe('the aggregator handler, records out of order and redelivered split', () => {
  it('reports the lowest sequence number failed when a batch out of order fails', async () => {
    const limiter = table.limiter();
    const entity = 'key-order';
    for (const tokens of [100, 200, 300]) {
      const lease = await limiter.acquire({
        checks: checks(entity),
        usage: { tokens },
        context: { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] },
      });
      if (!lease.allowed) throw new Error('refused');
    }
    const { Records: all, shardId = '' } = await streamEvent();
    const mine = all.filter((r) => JSON.stringify(r.dynamodb?.Keys).includes(entity));
    expect(mine).toHaveLength(3);
    const [r1, r2, r3] = mine as [Rec, Rec, Rec];
    // A record the aggregator cannot read makes the batch fail (as the shipped test does).
    const broken = {
      ...r3,
      dynamodb: { ...r3.dynamodb, SequenceNumber: '9'.repeat(41) },
    } as Rec;
    const answer = await handler({ Records: [r3, r1, r2, broken], shardId });
    // Lambda checkpoints at the lowest identifier reported: everything below it is taken as done.
    const lowest = [r1, r2, r3].map(seq).sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))[0];
    expect(answer.batchItemFailures).toEqual([{ itemIdentifier: lowest }]);
  });

  it('counts a batch out of order, then its bisected redelivery, once', async () => {
    const limiter = table.limiter();
    const entity = 'key-bisect';
    const ctx = {
      resource: 'm',
      scopes: [
        { entity, timezone: 'UTC' },
        { entity: 'org-bisect', timezone: 'America/New_York' },
      ],
    };
    for (const tokens of [100, 200, 300, 400]) {
      const lease = await limiter.acquire({
        checks: checks(entity),
        usage: { tokens },
        context: ctx,
      });
      if (!lease.allowed) throw new Error('refused');
      await limiter.adjust(lease.leaseId, { tokens: tokens + 1 });
      if (tokens === 300) await limiter.release(lease.leaseId); // counts nothing
    }
    const { Records: all, shardId = '' } = await streamEvent();
    const mine = all.filter((r) => {
      const k = JSON.stringify(r.dynamodb?.Keys);
      return k.includes(entity) || k.includes('lease#');
    });
    const shuffled = [...mine].reverse();
    expect((await handler({ Records: shuffled, shardId })).batchItemFailures).toEqual([]);
    const want = [[{ tokens: 100 + 1 + 200 + 1 + 400 + 1, requests: 3 }, 3]];
    expect(await totals(entity)).toEqual(want);
    const half = Math.floor(mine.length / 2);
    await handler({ Records: mine.slice(0, half), shardId });
    await handler({ Records: mine.slice(half), shardId });
    await handler({ Records: mine.slice(1), shardId });
    expect(await totals(entity)).toEqual(want);
    expect(await totals('org-bisect')).toEqual(want);
  });
});
