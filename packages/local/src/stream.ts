/**
 * The usage aggregator, locally: reads DynamoDB Local's stream of the table the way the Lambda
 * event source mapping reads it in AWS (every shard, from the oldest record kept, a child shard
 * after its parent), and hands each batch to the same aggregator code.
 *
 * It never stops reading on an error, and never skips a record to get going again. For each
 * shard it remembers the sequence number of the last record it handed over successfully; when
 * anything fails on a shard (GetRecords, a new iterator, or the batch's `apply`), it drops that
 * shard's iterator and, on the next pass, takes a new one AFTER_SEQUENCE_NUMBER of that record
 * (TRIM_HORIZON if it has handed nothing over from the shard). So an expired iterator, trimmed
 * data and a batch that failed halfway are read again from the same place: records may come
 * twice, which the aggregator counts once (it is idempotent per lease version), but none is
 * lost. Only if that record has itself been trimmed away (the reader was down for longer than
 * the stream keeps records) does it start from TRIM_HORIZON and say once, through
 * `onRecordsLost`, that records may have been lost.
 *
 * A stream that no longer exists (ResourceNotFoundException: the table was deleted, or
 * recreated with a new stream) or was disabled is found again by describing the table: a new
 * stream ARN is read from its start. A closed shard (no next iterator) is done; new shards are
 * picked up on every pass. While DynamoDB cannot be reached (restarted, paused, refusing
 * connections), passes fail and the reader waits between them, from `minBackoffMs` doubling to
 * `maxBackoffMs`, never in a tight loop, and carries on from where it was once DynamoDB
 * answers. Every failure is reported to `onError` and, with `progress`, recorded for the health
 * check (when the table can be written); so is recovery.
 *
 * A quiet stream is read less and less often: the pause after a pass that found nothing doubles
 * from `idleMs` up to `maxIdleMs` (an idle `npm start` then costs little CPU), and is short again
 * as soon as records come or `wake()` says some were just written.
 */

import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type Shard,
  type _Record as StreamsRecord,
  TrimmedDataAccessException,
} from '@aws-sdk/client-dynamodb-streams';
import { changeOf } from '@sluice/core';
import type { ItemChange, StreamRecord, UsageProgress } from '@sluice/core/internal';

/** A running stream reader. */
export interface StreamReader {
  /** Waits until every record written before this call has been handed over (for tests, shutdown). */
  drain(): Promise<void>;
  /**
   * Says records were just written: a pause while the stream was quiet ends now (or `idleMs`
   * after it began, if sooner), and the next ones start short again. The local server calls it
   * after each acquire, adjust and release.
   */
  wake(): void;
  stop(): Promise<void>;
}

/** What the reader sends its DynamoDB Streams requests with (a `DynamoDBStreamsClient`). */
export type StreamsSender = Pick<DynamoDBStreamsClient, 'send'>;

export interface StreamReaderOptions {
  readonly client: DynamoDBClient;
  readonly streams: StreamsSender;
  readonly tableName: string;
  /** Counts one batch; throws to have it read again. */
  readonly apply: (changes: readonly ItemChange[]) => Promise<void>;
  /** Told of every failure; the reader goes on, after a pause. */
  readonly onError: (error: unknown) => void;
  /**
   * Told when a shard had to be read again from its oldest record because the record it had
   * reached was trimmed: records between may have been lost. @default reported to `onError`
   */
  readonly onRecordsLost?: (shardId: string) => void;
  /** Where batches counted, failures and recoveries are recorded for the health check. */
  readonly progress?: Pick<UsageProgress, 'counted' | 'caughtUp' | 'failed'>;
  /**
   * Pause after a pass that found nothing new; it doubles while the stream stays quiet, up to
   * `maxIdleMs`, and is short again once records come (or {@link StreamReader.wake}). @default 200
   */
  readonly idleMs?: number;
  /** Longest pause while the stream is quiet. @default 2_000 */
  readonly maxIdleMs?: number;
  /** First pause after a failure (at least 10 ms); it doubles while failures go on. @default 200 */
  readonly minBackoffMs?: number;
  /** Longest pause after failures. @default 5_000 */
  readonly maxBackoffMs?: number;
}

/** What the reader knows of one shard. */
interface ShardState {
  readonly id: string;
  readonly parentId: string | undefined;
  /** Where the next GetRecords reads; none: take a new iterator after `last`. */
  iterator: string | undefined;
  /** Sequence number of the last record handed over; none: nothing yet (or it was trimmed). */
  last: string | undefined;
  /** Read to its end: the shard is closed and nothing is left in it. */
  done: boolean;
}

const NOT_FOUND = 'ResourceNotFoundException';
const isNotFound = (error: unknown) => error instanceof Error && error.name === NOT_FOUND;

/** Starts reading; every shard is read in order, new shards are picked up as they appear. */
export async function startStreamReader(options: StreamReaderOptions): Promise<StreamReader> {
  const reader = new Reader(options);
  await reader.locate(); // fails here, at once, when the table or its stream is not there
  const loop = reader.run();
  return {
    drain: () => reader.drain(),
    wake: () => reader.wake(),
    stop: async () => {
      reader.stop();
      await loop;
    },
  };
}

/** The reader's state, and its steps: find the stream, list its shards, read each, pause. */
class Reader {
  readonly #options: StreamReaderOptions;
  readonly #idleMs: number;
  readonly #maxIdleMs: number;
  /** The pause after the next quiet pass. */
  #quietMs: number;
  /** Ends the quiet pause under way, if any. */
  #wakeUp: (() => void) | undefined;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #onRecordsLost: (shardId: string) => void;
  readonly #aborting = new AbortController();
  /** The stream being read; `stale`: find it again (it may be gone or replaced). */
  #streamArn: string | undefined;
  #stale = false;
  readonly #shards = new Map<string, ShardState>();
  #stopped = false;
  #passes = 0;
  readonly #waiters: { after: number; resolve: () => void }[] = [];

  constructor(options: StreamReaderOptions) {
    this.#options = options;
    this.#idleMs = options.idleMs ?? 200;
    this.#maxIdleMs = Math.max(this.#idleMs, options.maxIdleMs ?? 2_000);
    this.#quietMs = this.#idleMs;
    this.#minBackoffMs = Math.max(10, options.minBackoffMs ?? 200);
    this.#maxBackoffMs = Math.max(this.#minBackoffMs, options.maxBackoffMs ?? 5_000);
    this.#onRecordsLost =
      options.onRecordsLost ??
      ((shardId: string) =>
        options.onError(new Error(`stream records of shard ${shardId} may have been lost`)));
  }

  get #signal(): AbortSignal {
    return this.#aborting.signal;
  }

  /** Resolves once a whole pass that started after this call found nothing new. */
  drain(): Promise<void> {
    const drained = new Promise<void>((resolve) => {
      this.#waiters.push({ after: this.#passes, resolve });
    });
    this.wake();
    return drained;
  }

  wake(): void {
    this.#quietMs = this.#idleMs;
    this.#wakeUp?.();
  }

  stop(): void {
    this.#stopped = true;
    this.#aborting.abort();
  }

  /** The table's stream now; a new one (the table was recreated) is read from its start. */
  async locate(): Promise<string> {
    const { Table } = await this.#options.client.send(
      new DescribeTableCommand({ TableName: this.#options.tableName }),
      { abortSignal: this.#signal },
    );
    const arn = Table?.StreamSpecification?.StreamEnabled ? Table.LatestStreamArn : undefined;
    if (!arn) throw new Error(`table ${this.#options.tableName} has no stream`);
    if (arn !== this.#streamArn) this.#shards.clear(); // the same stream: carry on where each was
    this.#streamArn = arn;
    this.#stale = false;
    return arn;
  }

  /** Passes until stopped: after a failure it backs off, doubling; when idle it pauses. */
  async run(): Promise<void> {
    let backoffMs = 0;
    while (!this.#stopped) {
      const started = ++this.#passes;
      let outcome: { moved: boolean; failure?: unknown };
      try {
        outcome = await this.#pass();
      } catch (error) {
        if (isNotFound(error)) this.#stale = true;
        outcome = { moved: false, failure: error };
      }
      if (this.#stopped) break;
      if (outcome.failure !== undefined) {
        this.#options.onError(outcome.failure);
        await this.#options.progress?.failed(outcome.failure);
        backoffMs = Math.min(
          this.#maxBackoffMs,
          backoffMs === 0 ? this.#minBackoffMs : backoffMs * 2,
        );
        await this.#pause(backoffMs);
        continue;
      }
      backoffMs = 0;
      if (outcome.moved) {
        this.#quietMs = this.#idleMs;
        continue;
      }
      // A whole pass that started after a waiter came, read nothing, and failed nowhere.
      for (const w of this.#waiters.splice(0)) {
        if (started > w.after) w.resolve();
        else this.#waiters.push(w);
      }
      await this.#options.progress?.caughtUp();
      // Quiet: each pause twice the last, up to maxIdleMs, unless woken (then short again).
      const quietMs = this.#quietMs;
      this.#quietMs = Math.min(this.#maxIdleMs, quietMs * 2);
      await this.#pause(quietMs, true);
    }
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  /**
   * One pass over every shard that can be read now (not done, its parent done). A shard that
   * fails is read again from its last record on a later pass; the others are still read in this
   * one, unless the stream itself is gone. `moved`: records were read or a shard ended, so
   * another pass may find more at once.
   */
  async #pass(): Promise<{ moved: boolean; failure?: unknown }> {
    const arn = this.#stale || !this.#streamArn ? await this.locate() : this.#streamArn;
    const shards = this.#shards;
    if (!(await this.#refreshShards(arn)) && [...shards.values()].every((s) => s.done)) {
      // Disabled and read to its end: the table may have a new stream.
      return { moved: (await this.locate()) !== arn };
    }
    let moved = false;
    let failure: unknown;
    for (const shard of shards.values()) {
      if (this.#stopped) break;
      if (shard.done || (shard.parentId && shards.get(shard.parentId)?.done === false)) continue;
      try {
        if (await this.#readShard(arn, shard)) moved = true;
      } catch (error) {
        shard.iterator = undefined;
        failure ??= error;
        if (isNotFound(error)) {
          this.#stale = true;
          break;
        }
      }
    }
    return failure === undefined ? { moved } : { moved, failure };
  }

  /** Adds new shards, forgets those the stream no longer lists; false if the stream is disabled. */
  async #refreshShards(arn: string): Promise<boolean> {
    const listed: Shard[] = [];
    let enabled = true;
    let after: string | undefined;
    do {
      const { StreamDescription } = await this.#options.streams.send(
        new DescribeStreamCommand({ StreamArn: arn, ExclusiveStartShardId: after }),
        { abortSignal: this.#signal },
      );
      // Never taken for "no shards": that would forget where each one was.
      if (!StreamDescription) throw new Error(`no description of stream ${arn}`);
      listed.push(...(StreamDescription.Shards ?? []));
      const status = StreamDescription.StreamStatus;
      enabled = status !== 'DISABLED' && status !== 'DISABLING';
      after = StreamDescription.LastEvaluatedShardId;
    } while (after);
    const ids = new Set<string>();
    for (const { ShardId: id, ParentShardId: parentId } of listed) {
      if (!id) continue;
      ids.add(id);
      if (!this.#shards.has(id))
        this.#shards.set(id, { id, parentId, iterator: undefined, last: undefined, done: false });
    }
    for (const [id, shard] of this.#shards) {
      if (ids.has(id)) continue;
      this.#shards.delete(id); // trimmed away: read to its end, or lost
      if (!shard.done) this.#onRecordsLost(id);
    }
    return enabled;
  }

  /** A new iterator for the shard: after the last record handed over, or from its oldest. */
  async #iteratorFor(arn: string, shard: ShardState): Promise<string> {
    const get = async (from: 'AFTER_SEQUENCE_NUMBER' | 'TRIM_HORIZON') => {
      const { ShardIterator } = await this.#options.streams.send(
        new GetShardIteratorCommand({
          StreamArn: arn,
          ShardId: shard.id,
          ShardIteratorType: from,
          ...(from === 'AFTER_SEQUENCE_NUMBER' ? { SequenceNumber: shard.last } : {}),
        }),
        { abortSignal: this.#signal },
      );
      if (!ShardIterator) throw new Error(`no ${from} iterator for shard ${shard.id}`);
      return ShardIterator;
    };
    if (shard.last === undefined) return get('TRIM_HORIZON');
    try {
      return await get('AFTER_SEQUENCE_NUMBER');
    } catch (error) {
      if (!(error instanceof TrimmedDataAccessException)) throw error;
      // Said once: from here the shard is read from its oldest record, as if new to it.
      shard.last = undefined;
      this.#onRecordsLost(shard.id);
      return get('TRIM_HORIZON');
    }
  }

  /** Reads one shard until it has nothing new; true if it read anything or reached its end. */
  async #readShard(arn: string, shard: ShardState): Promise<boolean> {
    let moved = false;
    while (!this.#stopped) {
      shard.iterator ??= await this.#iteratorFor(arn, shard);
      const out = await this.#options.streams.send(
        new GetRecordsCommand({ ShardIterator: shard.iterator, Limit: 1_000 }),
        { abortSignal: this.#signal },
      );
      const records = out.Records ?? [];
      if (records.length > 0) {
        await this.#handOver(shard, records);
        moved = true;
      }
      shard.iterator = out.NextShardIterator;
      if (!out.NextShardIterator) {
        shard.done = true; // closed and read to its end: its children may be read now
        return true;
      }
      if (records.length === 0) break;
    }
    return moved;
  }

  /** Counts one batch, then moves the shard past it. */
  async #handOver(shard: ShardState, records: readonly StreamsRecord[]): Promise<void> {
    const changes = records.flatMap((r) => changeOf(r as StreamRecord, shard.id) ?? []);
    await this.#options.apply(changes);
    shard.last = records.at(-1)?.dynamodb?.SequenceNumber ?? shard.last;
    const times = records.flatMap((r) => r.dynamodb?.ApproximateCreationDateTime?.getTime() ?? []);
    await this.#options.progress?.counted(
      changes,
      times.length > 0 ? Math.min(...times) : undefined,
    );
  }

  /**
   * Waits `ms`, or until the reader stops. A `wakeable` pause ends early on {@link wake}, but
   * never sooner than `idleMs` after it began: however often it is woken (a request after
   * request), the reader passes at most once per `idleMs` while nothing comes.
   */
  #pause(ms: number, wakeable = false): Promise<void> {
    const signal = this.#signal;
    return new Promise<void>((resolve) => {
      const startedMs = Date.now();
      let timer = setTimeout(done, ms);
      const wakeUp = () => {
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, startedMs + this.#idleMs - Date.now()));
      };
      if (wakeable) this.#wakeUp = wakeUp;
      const reader = this;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (reader.#wakeUp === wakeUp) reader.#wakeUp = undefined;
        resolve();
      }
      signal.addEventListener('abort', done);
    });
  }
}

export { DynamoDBStreamsClient };
