/**
 * The aggregator Lambda handler with records out of order within a batch, a batch that fails,
 * and redeliveries split differently (as Lambda's bisection does).
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
type Rec = WindowedStreamEvent['Records'][number];

beforeAll(async () => {
  table = await freshTable('u30-handler');
  handlerEnvironment(table);
  ({ handler } = (await import('@sluice/lambdas/aggregator')) as { handler: Handler });
});

/** Every record of the one shard, as Lambda's event carries them (times in seconds). */
async function records(): Promise<{ records: Rec[]; shardId: string }> {
  const streams = localStreams();
  const { Table } = await table.client.send(
    new DescribeTableCommand({ TableName: table.tableName }),
  );
  const StreamArn = Table?.LatestStreamArn;
  const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn }));
  const shard = StreamDescription?.Shards?.[0];
  const out: Rec[] = [];
  let { ShardIterator } = await streams.send(
    new GetShardIteratorCommand({
      StreamArn,
      ShardId: shard?.ShardId,
      ShardIteratorType: 'TRIM_HORIZON',
    }),
  );
  while (ShardIterator) {
    const page = await streams.send(new GetRecordsCommand({ ShardIterator }));
    if (!page.Records?.length) break;
    for (const r of page.Records) {
      const created = r.dynamodb?.ApproximateCreationDateTime;
      out.push({
        ...r,
        dynamodb: {
          ...r.dynamodb,
          ...(created ? { ApproximateCreationDateTime: Math.floor(created.getTime() / 1000) } : {}),
        },
      } as unknown as Rec);
    }
    ShardIterator = page.NextShardIterator;
  }
  return { records: out, shardId: String(shard?.ShardId) };
}

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

const seq = (r: Rec | undefined) => String(r?.dynamodb?.SequenceNumber);

describe('the aggregator handler', () => {
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
    const { records: all, shardId } = await records();
    const mine = all.filter((r) => JSON.stringify(r.dynamodb?.Keys).includes(entity));
    expect(mine).toHaveLength(3);
    const [r1, r2, r3] = mine as [Rec, Rec, Rec];
    // A record the aggregator cannot read makes the batch fail (as the shipped test does).
    const broken = {
      ...r3,
      dynamodb: {
        ...r3.dynamodb,
        NewImage: { ...r3.dynamodb?.NewImage, ev: { S: '{not json' } },
      },
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
    const { records: all, shardId } = await records();
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
