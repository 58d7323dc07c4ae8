/**
 * The usage aggregator, locally: reads DynamoDB Local's stream of the table the way the Lambda
 * event source mapping reads it in AWS (every shard, from the oldest record kept), and hands
 * each batch to the same aggregator code. A batch that fails is read again from the same place.
 */

import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from '@aws-sdk/client-dynamodb-streams';
import { changeOf, type ItemChange, type StreamRecord } from '@sluice/core';

/** A running stream reader. */
export interface StreamReader {
  /** Waits until every record written before this call has been handed over (for tests, shutdown). */
  drain(): Promise<void>;
  stop(): Promise<void>;
}

export interface StreamReaderOptions {
  readonly client: DynamoDBClient;
  readonly streams: DynamoDBStreamsClient;
  readonly tableName: string;
  /** Counts one batch; throws to have it read again. */
  readonly apply: (changes: readonly ItemChange[]) => Promise<void>;
  readonly onError: (error: unknown) => void;
  /** Pause between reads of a shard with nothing new. @default 200 */
  readonly idleMs?: number;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts reading; every shard is read in order, new shards are picked up as they appear. */
export async function startStreamReader(options: StreamReaderOptions): Promise<StreamReader> {
  const { Table } = await options.client.send(
    new DescribeTableCommand({ TableName: options.tableName }),
  );
  const streamArn = Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`table ${options.tableName} has no stream`);
  const idleMs = options.idleMs ?? 200;
  const iterators = new Map<string, string | undefined>(); // shard → next iterator (undefined: done)
  let stopped = false;
  let rounds = 0;
  const waiters: { round: number; resolve: () => void }[] = [];

  async function refreshShards() {
    const { StreamDescription } = await options.streams.send(
      new DescribeStreamCommand({ StreamArn: streamArn }),
    );
    for (const shard of StreamDescription?.Shards ?? []) {
      const id = shard.ShardId;
      if (!id || iterators.has(id)) continue;
      const { ShardIterator } = await options.streams.send(
        new GetShardIteratorCommand({
          StreamArn: streamArn,
          ShardId: id,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      );
      iterators.set(id, ShardIterator);
    }
  }

  /** One pass over every open shard, until each has nothing new; true if anything was read. */
  async function pass(): Promise<boolean> {
    let read = false;
    for (const [shard, iterator] of iterators) {
      let at = iterator;
      while (at && !stopped) {
        const out = await options.streams.send(
          new GetRecordsCommand({ ShardIterator: at, Limit: 1_000 }),
        );
        const records = out.Records ?? [];
        if (records.length > 0) {
          await options.apply(records.flatMap((r) => changeOf(r as StreamRecord) ?? []));
          read = true;
        }
        at = out.NextShardIterator;
        iterators.set(shard, at);
        if (records.length === 0) break;
      }
    }
    return read;
  }

  const loop = (async () => {
    while (!stopped) {
      try {
        await refreshShards();
        const read = await pass();
        rounds++;
        for (const w of waiters.splice(0)) {
          if (rounds > w.round && !read) w.resolve();
          else waiters.push(w);
        }
        if (!read) await pause(idleMs);
      } catch (error) {
        if (stopped) break;
        options.onError(error);
        await pause(idleMs * 5);
      }
    }
    for (const w of waiters.splice(0)) w.resolve();
  })();

  return {
    drain: () =>
      new Promise<void>((resolve) => {
        waiters.push({ round: rounds + 1, resolve });
      }),
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

export { DynamoDBStreamsClient };

/** Every change the table's stream holds now, in stream order (for tests and the benchmark). */
export async function readStream(
  options: Omit<StreamReaderOptions, 'apply' | 'onError'>,
): Promise<ItemChange[]> {
  const changes: ItemChange[] = [];
  let failure: unknown;
  const reader = await startStreamReader({
    ...options,
    apply: async (batch) => {
      changes.push(...batch);
    },
    onError: (error) => {
      failure = error;
    },
    idleMs: options.idleMs ?? 20,
  });
  await reader.drain();
  await reader.stop();
  if (failure !== undefined) throw failure;
  return changes;
}
