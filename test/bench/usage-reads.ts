/**
 * What reading usage history costs, on DynamoDB Local through the bench's counting client
 * (meter.ts):
 *   - `topEntities` (what `GET /v1/admin/usage/top` calls), the top 10 of one day, with 1,000 and
 *     with 100,000 entities in that day;
 *   - `usageHistory` (what `GET /v1/usage` calls) for one entity: a month of days, and a year of
 *     months, its hour rows present for every hour of the range and of the month before it.
 *
 * The items are written straight into a table of their own (BatchWriteItem, 25 items a request,
 * {@link WRITERS} requests at once), made by the aggregator's own functions: hour rows by
 * `hourRow` and `rowAssignments` (each attribute's value what its update leaves on a new item),
 * the day's top-entities boards by `added` and `boardWrite` from every entity's usage at once.
 * RCU is what DynamoDB Local reports for each request (every read here is strongly consistent, as
 * the store sends them); items read are the queries' `ScannedCount` and the items reads found.
 */
import {
  type AttributeValue,
  BatchWriteItemCommand,
  DynamoDB,
  type DynamoDBClientConfig,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBAdminStore, ensureTable, topEntities, usageHistory } from '@sluice/core';
import {
  type Assignment,
  added,
  type BoardPart,
  boardsFor,
  boardWrite,
  EMPTY_BOARD,
  hourRow,
  type RowDelta,
  type RowWrite,
  rowAssignments,
  TABLE_SCHEMA,
} from '@sluice/core/internal';
import { type Meter, meter } from './meter.js';

const TABLE = 'sluice-bench-usage-reads';
const RESOURCE = 'gpt-4o';
/** Entities a top-entities answer lists (`GET /v1/usage/top?limit=10`). */
const TOP_LIMIT = 10;
/** BatchWriteItem requests in flight at once while the rows are written. */
const WRITERS = 8;
const BATCH = 25;
/** Timed runs of each read, after one untimed (which also checks the answer). */
const RUNS = 3;
const HOUR_MS = 3_600_000;
/** The history entity's rows: every hour from a month before the year read to its end (UTC). */
const HISTORY = {
  entity: 'key-history',
  rowsFrom: Date.parse('2024-03-01T00:00:00Z'),
  yearFrom: Date.parse('2024-04-01T00:00:00Z'),
  monthFrom: Date.parse('2025-03-01T00:00:00Z'),
  to: Date.parse('2025-04-01T00:00:00Z'),
};

const round = (x: number, digits: number) => Number(x.toFixed(digits));

/**
 * Entity `i`'s usage in one row: 1 to 20 calls of about 2,000 tokens, and a few refusals for
 * every tenth entity (varied, so that the rows' numbers differ as real ones do).
 */
function delta(i: number): RowDelta {
  const calls = BigInt(1 + ((i * 7_919) % 20));
  const input = calls * 1_500n + BigInt(i % 1_000);
  const output = calls * 500n + BigInt(i % 97);
  return {
    metrics: new Map([
      ['requests', calls],
      ['input_tokens', input],
      ['output_tokens', output],
      ['tokens', input + output],
      ['cost_micro_usd', calls * 9_000n + BigInt(i % 10_000)],
    ]),
    leases: calls,
    denied: i % 10 === 0 ? new Map([['rpm', BigInt(1 + (i % 7))]]) : new Map(),
  };
}

/** What an assignment leaves on an item that did not exist. */
function onNewItem(a: Assignment): bigint | string {
  if ('value' in a) return a.value;
  if ('add' in a) return a.add;
  if ('addToExisting' in a) return a.base + a.addToExisting;
  if ('ifAbsent' in a) return a.ifAbsent;
  return a.orElse;
}

/** Items as an update's assignments leave them on new items. */
function itemsOf(key: RowWrite['key'], set: readonly Assignment[]): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {
    [TABLE_SCHEMA.partitionKey]: { S: key.pk },
    [TABLE_SCHEMA.sortKey]: { S: key.sk },
  };
  for (const a of set) {
    const value = onNewItem(a);
    item[a.attr] = typeof value === 'bigint' ? { N: String(value) } : { S: value };
  }
  return item;
}

/**
 * Day `date`'s top-entities boards (UTC) holding `entities` entities, each with its day's usage:
 * as the aggregator leaves them (what it keeps and its floor), all counted in one go.
 */
function* topBoards(date: string, entities: number): Generator<Record<string, AttributeValue>> {
  const atMs = Date.parse(`${date}T12:00:00Z`);
  const boards = new Map<
    string,
    { key: RowWrite['key']; expiresAtS: number; parts: BoardPart[] }
  >();
  for (let i = 0; i < entities; i++) {
    const entity = `key-${String(i).padStart(6, '0')}`;
    const { metrics, leases, denied } = delta(i);
    const [day] = boardsFor(entity, 'UTC', atMs);
    if (!day) throw new Error('usage_reads: no board for the day');
    const board = boards.get(day.key.pk) ?? { ...day, parts: [] };
    boards.set(day.key.pk, board);
    const sequence = String(i + 1).padStart(40, '0');
    board.parts.push({
      entity,
      contribution: {
        kind: 'settle',
        id: entity,
        atMs,
        context: { resource: RESOURCE, scopes: [{ entity, timezone: 'UTC' }] },
        metrics,
        leases,
        denied,
      },
      position: { shard: 'bench', sequence: String(i + 1), atMs },
      mark: 'ws_bench',
      sequence,
    });
  }
  for (const { key, expiresAtS, parts } of boards.values()) {
    const board = added(EMPTY_BOARD, parts);
    const write = boardWrite(key, undefined, board, parts, expiresAtS, atMs);
    yield itemsOf(key, write.set);
  }
}

/** The history entity's hour rows as `hourRow` makes them, one for every hour. */
function historyRows(): Record<string, AttributeValue>[] {
  const rows: Record<string, AttributeValue>[] = [];
  for (let atMs = HISTORY.rowsFrom, i = 0; atMs < HISTORY.to; atMs += HOUR_MS, i++) {
    const row = hourRow(HISTORY.entity, 'UTC', RESOURCE, atMs, delta(i));
    rows.push(itemsOf(row.key, rowAssignments(row)));
  }
  return rows;
}

/** Writes every item, {@link WRITERS} batches at once, unprocessed items again until none is. */
async function writeAll(client: DynamoDB, items: Iterable<Record<string, AttributeValue>>) {
  const source = items[Symbol.iterator]();
  const take = () => {
    const batch: WriteRequest[] = [];
    for (let next = source.next(); !next.done; next = source.next()) {
      batch.push({ PutRequest: { Item: next.value } });
      if (batch.length === BATCH) break;
    }
    return batch;
  };
  let rows = 0;
  let requests = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      for (let batch = take(); batch.length > 0; batch = take()) {
        rows += batch.length;
        for (let left = batch; left.length > 0; ) {
          if (left !== batch) await new Promise((resolve) => setTimeout(resolve, 20));
          requests++;
          const out = await client.send(
            new BatchWriteItemCommand({ RequestItems: { [TABLE]: left } }),
          );
          left = out.UnprocessedItems?.[TABLE] ?? [];
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1_000;
  return { rows, requests, seconds: round(seconds, 1), rows_per_s: Math.round(rows / seconds) };
}

/** One read's cost, per read: one untimed run (`check` judges its answer), then {@link RUNS}. */
async function cost<T>(m: Meter, read: () => Promise<T>, check: (answer: T) => string | undefined) {
  const wrong = check(await read());
  if (wrong) throw new Error(`usage_reads: ${wrong}`);
  m.reset();
  const ms: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const t0 = performance.now();
    await read();
    ms.push(performance.now() - t0);
  }
  const sorted = [...ms].sort((a, b) => a - b);
  return {
    requests: round(m.requests / RUNS, 2),
    items_read: round(m.itemsRead / RUNS, 1),
    rcu: round(m.rcu / RUNS, 1),
    median_ms: round(sorted[RUNS >> 1] ?? Number.NaN, 1),
    ms: ms.map((x) => round(x, 1)),
  };
}

/** The top entities of one day that holds `entities` entities, after writing their rows. */
async function topCase(
  writer: DynamoDB,
  store: DynamoDBAdminStore,
  m: Meter,
  date: string,
  entities: number,
) {
  const generated = await writeAll(writer, topBoards(date, entities));
  const query = {
    period: 'day' as const,
    date,
    metric: 'cost_micro_usd',
    by: 'usage' as const,
    limit: TOP_LIMIT,
  };
  const read = () => topEntities(store, query);
  let exact = false;
  const measured = await cost(m, read, (top) => {
    exact = top.exact;
    return top.items.length === TOP_LIMIT ? undefined : `top of ${date}: ${top.items.length}`;
  });
  return { entities, ...measured, exact, generated };
}

/** An entity's history over `[fromMs, to)` by `granularity`, which must answer `periods`. */
function historyCase(
  store: DynamoDBAdminStore,
  m: Meter,
  granularity: 'day' | 'month',
  fromMs: number,
  periods: number,
) {
  const query = { entity: HISTORY.entity, granularity, fromMs, toMs: HISTORY.to };
  return cost(
    m,
    () => usageHistory(store, query),
    (answer) =>
      answer.length === periods ? undefined : `${granularity}s: ${answer.length}, not ${periods}`,
  ).then((measured) => ({ periods, ...measured }));
}

/** Every usage-history read the bench measures, on a table of its own. */
export async function usageReads(clientConfig: DynamoDBClientConfig) {
  const writer = new DynamoDB(clientConfig);
  await ensureTable(writer, TABLE, { stream: false, timeToLive: false });
  const reader = new DynamoDB(clientConfig);
  const m = meter(reader);
  const store = new DynamoDBAdminStore({ client: reader, tableName: TABLE });
  const top = {
    entities_1000: await topCase(writer, store, m, '2025-03-10', 1_000),
    entities_100000: await topCase(writer, store, m, '2025-03-11', 100_000),
  };
  const generated = await writeAll(writer, historyRows());
  const history = {
    month_of_days: await historyCase(store, m, 'day', HISTORY.monthFrom, 31),
    year_of_months: await historyCase(store, m, 'month', HISTORY.yearFrom, 12),
    generated,
  };
  return {
    method: {
      rcu: 'as DynamoDB Local reports it (ReturnConsumedCapacity TOTAL on every read)',
      items_read: "the queries' ScannedCount, and the items GetItem and BatchGetItem found",
      timed_runs: RUNS,
      top_limit: TOP_LIMIT,
      history_resources: 1,
      parallel_batch_writes: WRITERS,
    },
    top,
    history,
  };
}
