/**
 * `in_process` of `npm run bench`: the same acquire-and-release through `@sluice/client` to the
 * local HTTP API and through `@sluice/client/in-process`, on one DynamoDB Local and one table.
 * Latency (p50, p99) of single calls in interleaved rounds; decisions per second with many calls
 * in flight through one client (one container's memory); and what reaches DynamoDB per decision,
 * counted on each way's own DynamoDB client (the local server's, the in-process runtime's).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type AcquireResult, SluiceClient as HttpClient } from '@sluice/client';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '@sluice/local';
import { meter } from './meter.js';

/** Rounds of both ways in turn (the first warms them up), and calls per way a round. */
const ROUNDS = 4;
const CALLS = 200;
/** Decisions in the throughput run, and how many are in flight at once. */
const THROUGHPUT_CALLS = 2_000;
const IN_FLIGHT = 16;

/** One way's figures. */
export interface WayFigures {
  /** Acquire and release of one call, one at a time (ms). */
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** Acquires per second, {@link IN_FLIGHT} at once through one client. */
  readonly decisions_per_s: number;
  /** DynamoDB requests per acquire and release, once warm (the throughput run's). */
  readonly dynamodb_requests_per_call: number;
}

export interface InProcessFigures {
  readonly rounds: number;
  readonly calls_per_round: number;
  readonly throughput_calls: number;
  readonly in_flight: number;
  readonly http: WayFigures;
  readonly in_process: WayFigures;
}

const percentile = (times: readonly number[], p: number) => {
  const sorted = [...times].sort((a, b) => a - b);
  const at = Math.min(sorted.length - 1, Math.floor(sorted.length * p));
  return Number((sorted[at] ?? 0).toFixed(3));
};

type Client = Pick<HttpClient, 'acquire' | 'release'>;

/** One call: acquire a lease (each is an admission), settle it. */
async function call(client: Client, entity: string): Promise<void> {
  const lease: AcquireResult = await client.acquire({
    entity,
    resource: 'ip-bench-model',
    usage: { tokens: 100 },
    limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000_000, per: 'minute' }],
  });
  if (!lease.allowed || lease.degraded) throw new Error(`not admitted: ${JSON.stringify(lease)}`);
  await client.release(lease.leaseId, { tokens: 90 });
}

/** `count` calls, `inFlight` at a time, over 50 entities; calls per second. */
async function throughput(client: Client, prefix: string, count: number, inFlight: number) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let i = next++; i < count; i = next++) await call(client, `${prefix}-${i % 50}`);
    }),
  );
  return Math.round(count / ((performance.now() - t0) / 1_000));
}

/**
 * Both ways on `tableName` at `endpoint`, the HTTP one through the local server at `serverUrl`
 * (which serves from this process: its runtime's DynamoDB client is counted here).
 */
export async function inProcessBeside(options: {
  readonly endpoint: string;
  readonly tableName: string;
  readonly serverUrl: string;
}): Promise<InProcessFigures> {
  // Imported once the caller has set the handlers' environment (their logger reads it).
  const { SluiceClient } = await import('@sluice/client/in-process');
  const { dynamodbClient, getRuntime } = await import('@sluice/lambdas/runtime');
  const http = new HttpClient({ endpoint: options.serverUrl });
  const own: DynamoDBClient = dynamodbClient(
    { dynamodbEndpoint: options.endpoint },
    { region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS },
  );
  const local = new SluiceClient({ table: options.tableName, dynamodb: own });
  const ways = { http, in_process: local } as const;
  const meters = { http: meter(getRuntime().client), in_process: meter(own) };
  const samples = { http: [] as number[], in_process: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const way of ['http', 'in_process'] as const) {
      for (let i = 0; i < CALLS; i++) {
        const t0 = performance.now();
        await call(ways[way], `ip-lat-${way}-${i % 50}`);
        if (round > 0) samples[way].push(performance.now() - t0);
      }
    }
  }
  const figures = {} as Record<'http' | 'in_process', WayFigures>;
  for (const way of ['http', 'in_process'] as const) {
    meters[way].reset();
    const perSecond = await throughput(ways[way], `ip-tp-${way}`, THROUGHPUT_CALLS, IN_FLIGHT);
    figures[way] = {
      p50_ms: percentile(samples[way], 0.5),
      p99_ms: percentile(samples[way], 0.99),
      decisions_per_s: perSecond,
      dynamodb_requests_per_call: Number((meters[way].requests / THROUGHPUT_CALLS).toFixed(2)),
    };
  }
  own.destroy();
  return {
    rounds: ROUNDS,
    calls_per_round: CALLS,
    throughput_calls: THROUGHPUT_CALLS,
    in_flight: IN_FLIGHT,
    ...figures,
  };
}

/** Runs it alone: `npx tsx test/bench/in-process.ts` (after `tsc -b`), on its own DynamoDB Local. */
if (process.argv[1]?.endsWith('in-process.ts')) {
  const { ensureTable } = await import('@sluice/core');
  const { routes } = await import('@sluice/lambdas/routes');
  const { localClient, startDynamoDBLocal, startLocalServer } = await import('@sluice/local');
  const db = await startDynamoDBLocal();
  try {
    await ensureTable(localClient(db.endpoint), 'sluice-bench', { stream: false });
    Object.assign(process.env, {
      SLUICE_TABLE_NAME: 'sluice-bench',
      SLUICE_DYNAMODB_ENDPOINT: db.endpoint,
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      POWERTOOLS_LOG_LEVEL: 'SILENT',
      POWERTOOLS_METRICS_DISABLED: 'true',
    });
    const server = await startLocalServer({ routes });
    const figures = await inProcessBeside({
      endpoint: db.endpoint,
      tableName: 'sluice-bench',
      serverUrl: server.url,
    });
    console.log(JSON.stringify(figures, null, 2));
    await server.close();
  } finally {
    await db.stop();
  }
}
