/**
 * A fresh table on the run's DynamoDB Local, per test file (or per test), so files run in parallel.
 */
import { randomBytes } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DynamoDBAdminStore,
  ensureTable,
  Limiter,
  type LimiterOptions,
  StoreUnavailableError,
} from '@sluice/core';
import { LOCAL_CREDENTIALS, LOCAL_REGION, localClient } from '@sluice/local';
import { beforeAll, inject } from 'vitest';
import { CountingStore } from './counting-store.js';

export interface TestTable {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly store: DynamoDBAdminStore;
  /** A limiter on this table: each one is a separate "process" with its own memory. */
  limiter(options?: Omit<LimiterOptions, 'store'>): Limiter;
}

/**
 * `timeToLive` stays off unless asked for: tests move clocks into the past, and DynamoDB Local
 * deletes items whose TTL (set from the engine's clock) has passed in real time.
 */
export async function freshTable(
  prefix: string,
  options: { timeToLive?: boolean } = {},
): Promise<TestTable> {
  const client = localClient(inject('dynamoEndpoint'));
  const tableName = `${prefix}-${randomBytes(4).toString('hex')}`;
  await ensureTable(client, tableName, { timeToLive: options.timeToLive ?? false });
  const store = new DynamoDBAdminStore({ client, tableName });
  return {
    client,
    tableName,
    store,
    limiter: (options = {}) => new Limiter({ store, ...options }),
  };
}

/**
 * A fresh table for the calling test file (or `describe` block), made before its tests: what
 * `freshTable` gives, there once the tests run.
 */
export function fileTable(prefix: string, options: { timeToLive?: boolean } = {}): TestTable {
  let table: TestTable | undefined;
  beforeAll(async () => {
    table = await freshTable(prefix, options);
  });
  const made = (): TestTable => {
    if (!table) throw new Error('the table is not made yet (use it inside a test)');
    return table;
  };
  return {
    get client() {
      return made().client;
    },
    get tableName() {
      return made().tableName;
    },
    get store() {
      return made().store;
    },
    limiter: (options) => made().limiter(options),
  };
}

/** A clock tests move by hand (epoch ms). */
export function manualClock(startMs = Date.parse('2026-01-15T12:00:00Z')) {
  let now = startMs;
  return {
    now: () => now,
    set: (ms: number) => {
      now = ms;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
}

/**
 * One process on `table`: a limiter with a clock the test moves by hand, on a store that counts
 * what reaches DynamoDB (`store.counts`).
 */
export function countedLimiter(table: TestTable, startMs?: number) {
  const clock = manualClock(startMs);
  const store = new CountingStore(table.store);
  return { clock, store, limiter: new Limiter({ store, clock: clock.now }) };
}

/**
 * Points the Lambda handlers of this test file at `table` on the run's DynamoDB Local, as the
 * construct's environment points them at theirs (set before a handler module is imported).
 */
export function handlerEnvironment(table: TestTable): void {
  process.env.SLUICE_TABLE_NAME = table.tableName;
  process.env.SLUICE_DYNAMODB_ENDPOINT = inject('dynamoEndpoint');
  process.env.AWS_REGION = LOCAL_REGION;
  process.env.AWS_ACCESS_KEY_ID = LOCAL_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = LOCAL_CREDENTIALS.secretAccessKey;
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
}

/**
 * A call to the engine as a client makes it: sent again after a `StoreUnavailableError` (the 503
 * of contention that outlasted its attempts: it wrote nothing, or gave back what it took; a
 * settlement applies once however often it is sent), after a jittered wait. Tests that count
 * admissions and settle leases from many callers at once use it: under load a 503 is neither an
 * admission nor a refusal, and a test that counts it as either fails for the machine's load.
 */
export async function asClient<T>(call: () => Promise<T>, tries = 20): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || attempt === tries) throw error;
      await new Promise((wake) => setTimeout(wake, Math.random() * 10 * Math.min(attempt, 8)));
    }
  }
}
