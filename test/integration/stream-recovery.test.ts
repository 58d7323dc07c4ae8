/**
 * The local stream reader (what `npm start` counts usage history with) on DynamoDB Local's real
 * stream, through each kind of failure. A failure is injected by making one call of the real
 * Streams client throw the SDK's own exception, at a point where the test holds the reader; the
 * reader's recovery then runs for real. After each, what it handed over is exactly what a fresh
 * reader of the stream sees (more only where it had to read a shard again from its start), and
 * usage history, counted by the real aggregator, is exactly what was settled.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  type DynamoDBStreamsClient,
  ExpiredIteratorException,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ResourceNotFoundException,
  TrimmedDataAccessException,
} from '@aws-sdk/client-dynamodb-streams';
import {
  DynamoDBAdminStore,
  ensureTable,
  itemKeys,
  Limiter,
  parseLimits,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import { errorName, type ItemChange } from '@sluice/core/internal';
import {
  type DynamoDBLocal,
  localClient,
  type StreamReader,
  startDynamoDBLocal,
  startStreamReader,
} from '@sluice/local';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { tableName as newTableName } from '../support/api.js';
import { FaultyStreams } from '../support/faulty-streams.js';
import { localStreams, streamed } from '../support/streams.js';

const WAIT = { timeout: 30_000, interval: 50 };
const $metadata = {};

/** One reader under test, counting into usage history, and what it did. */
interface Run {
  readonly endpoint: string;
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly store: DynamoDBAdminStore;
  readonly streams: FaultyStreams;
  readonly reader: StreamReader;
  /** The changes of every batch it handed over and `apply` took, in order. */
  readonly counted: ItemChange[];
  /** Batches `apply` threw on. */
  readonly refused: ItemChange[][];
  readonly errors: unknown[];
  readonly lost: string[];
  /** The next batch is counted only halfway, then `apply` throws. */
  failNextApplyHalfway(): void;
}

const running: Run[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((run) => run.reader.stop()));
});

async function startRun(endpoint: string, tableName?: string): Promise<Run> {
  const client = localClient(endpoint);
  const name = tableName ?? newTableName('stream-recovery');
  if (!tableName) await ensureTable(client, name, { timeToLive: false });
  const store = new DynamoDBAdminStore({ client, tableName: name });
  const aggregator = new UsageAggregator({ store });
  const streams = new FaultyStreams(endpoint);
  const counted: ItemChange[] = [];
  const refused: ItemChange[][] = [];
  const errors: unknown[] = [];
  const lost: string[] = [];
  let halfway = false;
  const reader = await startStreamReader({
    client,
    streams,
    tableName: name,
    apply: async (changes) => {
      if (halfway) {
        halfway = false;
        refused.push([...changes]);
        await aggregator.apply(changes.slice(0, Math.ceil(changes.length / 2)));
        throw new Error('counting failed halfway');
      }
      await aggregator.apply(changes);
      counted.push(...changes);
    },
    onError: (error) => errors.push(error),
    onRecordsLost: (shard) => lost.push(shard),
  });
  const run: Run = {
    endpoint,
    client,
    tableName: name,
    store,
    streams,
    reader,
    counted,
    refused,
    errors,
    lost,
    failNextApplyHalfway: () => {
      halfway = true;
    },
  };
  running.push(run);
  return run;
}

/** Tokens settled per entity, as usage history must count them. */
const settled = new Map<string, { tokens: number; leases: number }>();

/** `count` leases of `entity`, each acquired and released at its own total. */
async function settle(run: Run, entity: string, count: number): Promise<void> {
  const limiter = new Limiter({ store: run.store });
  const checks = [
    {
      scope: 'entity',
      key: itemKeys.entityBucket(entity, 'm'),
      limits: parseLimits([{ name: 'tpd', metric: 'tokens', limit: 10_000_000, per: 'day' }]),
    },
  ];
  const context = { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] };
  for (let i = 0; i < count; i++) {
    const lease = await limiter.acquire({ checks, usage: { tokens: 500 }, context });
    if (!lease.allowed) throw new Error('refused');
    const tokens = 100 + settled.size * 10 + i;
    await limiter.release(lease.leaseId, { tokens });
    const sum = settled.get(entity) ?? { tokens: 0, leases: 0 };
    settled.set(entity, { tokens: sum.tokens + tokens, leases: sum.leases + 1 });
  }
}

async function usageOf(run: Run, entity: string) {
  const rows = await usageHistory(run.store, {
    entity,
    granularity: 'month',
    fromMs: Date.now() - 40 * 86_400_000,
    toMs: Date.now() + 86_400_000,
  });
  return {
    tokens: rows.reduce((sum, row) => sum + (row.usage.tokens ?? 0), 0),
    leases: rows.reduce((sum, row) => sum + row.leases, 0),
  };
}

/** Each change as its key and a digest of its images (short enough to read in a diff). */
const text = (changes: readonly ItemChange[]) =>
  changes.map((c) => {
    const images = JSON.stringify([c.oldImage, c.newImage], (_, v) =>
      typeof v === 'bigint' ? `${v}n` : v,
    );
    return `${c.key.pk} ${c.key.sk} ${createHash('sha256').update(images).digest('hex').slice(0, 12)}`;
  });

/** Every change the stream holds now, as a fresh reader (with a plain client) sees it. */
const fresh = (run: Run) => streamed(run, run.endpoint);

/**
 * Waits until the reader has handed over as much as a fresh reader sees, then compares the two:
 * `before` is what it handed over first (of an older stream, or before reading a shard again).
 */
async function expectHandedOverAsFresh(run: Run, before: readonly string[] = []): Promise<void> {
  let seen: string[] = [];
  let want: string[] = [];
  await expect
    .poll(async () => {
      seen = text(run.counted); // first what it has handed over, then all the stream holds
      want = [...before, ...text(await fresh(run))];
      return seen.length >= want.length;
    }, WAIT)
    .toBe(true)
    .catch(() => {}); // the comparison below says what is missing
  expect(seen).toEqual(want);
}

async function expectUsageSettled(run: Run, entity: string): Promise<void> {
  expect(await usageOf(run, entity)).toEqual(settled.get(entity));
}

const expired = () => new ExpiredIteratorException({ message: 'x', $metadata });
const trimmed = () => new TrimmedDataAccessException({ message: 'x', $metadata });
const notFound = () => new ResourceNotFoundException({ message: 'x', $metadata });
const connectionReset = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

describe('the local stream reader, when reading fails', () => {
  it.each([
    ['ExpiredIteratorException', 'GetRecords', expired],
    ['TrimmedDataAccessException', 'GetRecords', trimmed],
    ['ResourceNotFoundException', 'GetRecords', notFound],
    ['ResourceNotFoundException', 'DescribeStream', notFound],
    ['ECONNRESET', 'GetRecords', connectionReset],
  ] as const)(
    'recovers from %s (%s): nothing lost, nothing handed over twice',
    async (name, command, error) => {
      const run = await startRun(inject('dynamoEndpoint'));
      const entity = `key-${command}-${name}`;
      await settle(run, entity, 4);
      await expectHandedOverAsFresh(run);
      // The reader stands at the call that is to fail; more is written meanwhile. The
      // iterator it holds dies with the fault (but for a dropped connection).
      const fault = run.streams.fail(command, error, () => true, name !== 'ECONNRESET');
      await expect.poll(() => fault.held, WAIT).toBe(true);
      await settle(run, entity, 4);

      fault.release();

      await expectHandedOverAsFresh(run);
      expect(run.errors.map(errorName)).toEqual([name]);
      expect(run.lost).toEqual([]);
      await expectUsageSettled(run, entity);
    },
  );

  it('reads a batch whose counting failed halfway again from the same place, and counts it once', async () => {
    const run = await startRun(inject('dynamoEndpoint'));
    await settle(run, 'key-halfway', 3);
    await expectHandedOverAsFresh(run);
    const before = run.counted.length;

    run.failNextApplyHalfway();
    await settle(run, 'key-halfway', 5);

    await expectHandedOverAsFresh(run);
    const [failed] = run.refused;
    expect(failed?.length).toBeGreaterThan(0);
    // The batch read again starts where the failed one did.
    expect(text(run.counted.slice(before, before + (failed?.length ?? 0)))).toEqual(
      text(failed ?? []),
    );
    expect(run.errors.map((e) => (e as Error).message)).toEqual(['counting failed halfway']);
    await expectUsageSettled(run, 'key-halfway');
  });

  it('reads a shard again from its oldest record when the record it reached was trimmed, and says so once', async () => {
    const run = await startRun(inject('dynamoEndpoint'));
    await settle(run, 'key-trimmed', 3);
    await expectHandedOverAsFresh(run);
    const first = text(run.counted);
    const stale = run.streams.fail('GetRecords', expired);
    await expect.poll(() => stale.held, WAIT).toBe(true);
    run.streams
      .fail(
        'GetShardIterator',
        trimmed,
        (input) => input.ShardIteratorType === 'AFTER_SEQUENCE_NUMBER',
      )
      .release();
    await settle(run, 'key-trimmed', 3);

    stale.release();

    // All it had handed over, then the whole shard again from its oldest record.
    await expectHandedOverAsFresh(run, first);
    expect(run.lost).toHaveLength(1);
    expect(run.errors.map(errorName)).toEqual(['ExpiredIteratorException']);
    await expectUsageSettled(run, 'key-trimmed');
  });

  it('follows the table to its new stream when it is deleted and created again', async () => {
    const run = await startRun(inject('dynamoEndpoint'));
    await settle(run, 'key-old-table', 3);
    await expectHandedOverAsFresh(run);
    const before = text(run.counted);

    await run.client.send(new DeleteTableCommand({ TableName: run.tableName }));
    await ensureTable(run.client, run.tableName, { timeToLive: false });
    await settle(run, 'key-new-table', 3);

    // The old stream's records, then the new stream's, which is all a fresh reader sees now.
    await expectHandedOverAsFresh(run, before);
    await expectUsageSettled(run, 'key-new-table');
    expect(run.lost).toEqual([]);
  });

  it('waits while DynamoDB Local is down (connection refused) and carries on where it was once it is back', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-stream-'));
    let db: DynamoDBLocal = await startDynamoDBLocal({ dataDir });
    try {
      const run = await startRun(db.endpoint);
      await settle(run, 'key-restart', 3);
      await expectHandedOverAsFresh(run);

      await db.stop();
      await expect.poll(() => run.errors.length, WAIT).toBeGreaterThanOrEqual(3);
      db = await startDynamoDBLocal({ dataDir, port: db.port });
      await settle(run, 'key-restart', 3);

      await expectHandedOverAsFresh(run);
      expect(new Set(run.errors.map(errorName))).toEqual(new Set(['ECONNREFUSED']));
      await expectUsageSettled(run, 'key-restart');
    } finally {
      await Promise.all(running.splice(0).map((run) => run.reader.stop()));
      await db.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('counts once with two readers on one stream, one of them failing', async () => {
    const one = await startRun(inject('dynamoEndpoint'));
    const two = await startRun(inject('dynamoEndpoint'), one.tableName);
    await settle(one, 'key-two-readers', 3);
    await expectHandedOverAsFresh(one);
    await expectHandedOverAsFresh(two);
    const fault = two.streams.fail('GetRecords', trimmed);
    await expect.poll(() => fault.held, WAIT).toBe(true);
    await settle(one, 'key-two-readers', 3);

    fault.release();

    await expectHandedOverAsFresh(one);
    await expectHandedOverAsFresh(two);
    await expectUsageSettled(one, 'key-two-readers');
  });
});

/**
 * DynamoDB Local keeps one shard open for ever: a stream whose shard closed and left a child
 * cannot be made there. This stand-in serves such a stream (a closed parent listed after its
 * open child) with the Streams API's own shapes.
 */
function splitStream() {
  const record = (shard: string, i: number) => ({
    eventName: 'INSERT',
    dynamodb: {
      Keys: { pk: { S: `${shard}-${i}` }, sk: { S: 'x' } },
      NewImage: { pk: { S: `${shard}-${i}` }, sk: { S: 'x' } },
      SequenceNumber: String(i + (shard === 'child' ? 100 : 0)).padStart(21, '0'),
      ApproximateCreationDateTime: new Date(),
    },
  });
  const shards = new Map([
    ['child', { parent: 'parent', closed: false, records: [0, 1].map((i) => record('child', i)) }],
    [
      'parent',
      { parent: undefined, closed: true, records: [0, 1, 2].map((i) => record('parent', i)) },
    ],
  ]);
  const reads = new Map<string, number>();
  let childExpiresOnce = true;
  const send = async (command: object) => {
    if (command instanceof DescribeStreamCommand)
      return {
        StreamDescription: {
          StreamStatus: 'ENABLED',
          Shards: [...shards].map(([id, s]) => ({ ShardId: id, ParentShardId: s.parent })),
        },
      };
    if (command instanceof GetShardIteratorCommand) {
      const { ShardId, ShardIteratorType, SequenceNumber } = command.input;
      const records = shards.get(ShardId ?? '')?.records ?? [];
      const at =
        ShardIteratorType === 'AFTER_SEQUENCE_NUMBER'
          ? records.findIndex((r) => r.dynamodb.SequenceNumber === SequenceNumber) + 1
          : 0;
      return { ShardIterator: `${ShardId}:${at}` };
    }
    if (command instanceof GetRecordsCommand) {
      const [id = '', at = '0'] = (command.input.ShardIterator ?? '').split(':');
      const shard = shards.get(id);
      if (!shard) throw notFound();
      reads.set(id, (reads.get(id) ?? 0) + 1);
      if (id === 'child' && Number(at) > 0 && childExpiresOnce) {
        childExpiresOnce = false;
        throw expired();
      }
      const records = shard.records.slice(Number(at), Number(at) + 1); // one record a read
      const next = Number(at) + records.length;
      const end = shard.closed && records.length === 0;
      return { Records: records, ...(end ? {} : { NextShardIterator: `${id}:${next}` }) };
    }
    throw new Error('not served');
  };
  return { streams: { send } as unknown as Pick<DynamoDBStreamsClient, 'send'>, reads };
}

describe('the local stream reader, across shards', () => {
  it('reads a child shard after its closed parent, and a closed shard no more', async () => {
    const client = localClient(inject('dynamoEndpoint'));
    const table = newTableName('stream-shards');
    await ensureTable(client, table, { timeToLive: false });
    const { streams, reads } = splitStream();
    const keys: string[] = [];
    const errors: unknown[] = [];
    const reader = await startStreamReader({
      client,
      streams,
      tableName: table,
      apply: async (changes) => {
        keys.push(...changes.map((c) => c.key.pk));
      },
      onError: (error) => errors.push(error),
      idleMs: 20,
    });
    try {
      await reader.drain();
      const parentReads = reads.get('parent');
      await reader.drain();

      expect(keys).toEqual(['parent-0', 'parent-1', 'parent-2', 'child-0', 'child-1']);
      expect(reads.get('parent')).toBe(parentReads);
      expect(errors.map(errorName)).toEqual(['ExpiredIteratorException']);
    } finally {
      await reader.stop();
    }
  });
});

/** A new table, and DynamoDB Local's Streams client counting the requests sent through it. */
async function countedStream(prefix: string) {
  const client = localClient(inject('dynamoEndpoint'));
  const table = newTableName(prefix);
  await ensureTable(client, table, { timeToLive: false });
  const real = localStreams();
  let sent = 0;
  const streams = {
    send: ((command: never) => {
      sent += 1;
      return real.send(command);
    }) as Pick<DynamoDBStreamsClient, 'send'>['send'],
  };
  return { client, table, streams, sends: () => sent };
}

describe('the local stream reader, on a quiet stream', () => {
  it('reads less and less often while nothing comes, and at once when woken', async () => {
    const { client, table, streams, sends } = await countedStream('stream-quiet');
    const seen: { pk: string; atMs: number }[] = [];
    const reader = await startStreamReader({
      client,
      streams,
      tableName: table,
      apply: async (changes) => {
        for (const c of changes) seen.push({ pk: c.key.pk, atMs: Date.now() });
      },
      onError: () => {},
      idleMs: 20,
      maxIdleMs: 640,
    });
    const store = new DynamoDBAdminStore({ client, tableName: table });
    const write = (pk: string) =>
      store.update({ key: { pk, sk: '*' }, set: [{ attr: 'n', value: 1n }] });
    const arrival = async (pk: string, fromMs: number) => {
      await expect.poll(() => seen.some((s) => s.pk === pk), WAIT).toBe(true);
      return (seen.find((s) => s.pk === pk)?.atMs ?? 0) - fromMs;
    };
    try {
      await reader.drain();
      await new Promise((resolve) => setTimeout(resolve, 2_000)); // quiet: pauses reach 640 ms
      const before = sends();
      await new Promise((resolve) => setTimeout(resolve, 1_300));
      const quietSends = sends() - before;
      // At 20 ms a pass (as it was), 1.3 s held more than 60 passes, each one request or more;
      // at 640 ms, three passes at most (a pass: a shard listing and a read or two).
      expect(quietSends).toBeLessThan(12);

      // Written and woken: read at once, not after the quiet pause.
      await new Promise((resolve) => setTimeout(resolve, 50));
      let t0 = Date.now();
      await write('woken');
      reader.wake();
      expect(await arrival('woken', t0)).toBeLessThan(400);

      // Written with no wake: still read, within the longest pause.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      t0 = Date.now();
      await write('unannounced');
      expect(await arrival('unannounced', t0)).toBeLessThan(640 + 1_000);
    } finally {
      await reader.stop();
    }
  });
});

describe('the local stream reader, woken again and again', () => {
  it('passes at most once per idleMs while nothing comes, however often it is woken', async () => {
    const { client, table, streams, sends } = await countedStream('stream-storm');
    const reader = await startStreamReader({
      client,
      streams,
      tableName: table,
      apply: async () => {},
      onError: () => {},
      idleMs: 100,
      maxIdleMs: 400,
    });
    try {
      await reader.drain();
      const before = sends();
      const t0 = Date.now();
      while (Date.now() - t0 < 1_000) {
        reader.wake(); // as a server would after every request
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      // Ten passes at most, a few requests each; each wake ending its pause: hundreds.
      expect(sends() - before).toBeLessThan(40);
    } finally {
      await reader.stop();
    }
  });
});
