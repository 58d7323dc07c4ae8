/**
 * The local HTTP path under load beside the engine in this process, with the usage aggregator
 * running: `npm start`'s server (a process of its own, its stream reader counting usage history
 * as the calls come) and the engine, both on one table of the bench's DynamoDB Local. In turns
 * (HTTP, engine, HTTP, engine), {@link CLIENTS} clients each make LLM calls — an acquire, then a
 * release with the usage — for {@link PHASE_MS}; every call counts in usage history, so the
 * aggregator works through both. The figures are the medians over both turns of each.
 */

import { DynamoDB, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { SluiceClient } from '@sluice/client';
import { DynamoDBAdminStore, ensureTable, itemKeys, Limiter, parseLimits } from '@sluice/core';
import { spawnLocalServer } from '../support/spawn.js';

/** Concurrent clients in each turn. */
export const CLIENTS = 8;
/** How long each turn lasts. */
const PHASE_MS = 6_000;
const TABLE = 'sluice-bench-under-load';
const LIMITS = [{ name: 'rpm', metric: 'requests', limit: 100_000, per: 'minute' }] as const;
const USAGE = { input_tokens: 1_500, output_tokens: 500 };

const percentile = (xs: readonly number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
};
const ms = (x: number) => Number(x.toFixed(2));

/** One turn: `CLIENTS` loops of `call` until the time is up; each call's and acquire's time. */
async function turn(call: (client: number, i: number) => Promise<number>) {
  const acquires: number[] = [];
  const calls: number[] = [];
  const until = performance.now() + PHASE_MS;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = 0; performance.now() < until; i++) {
        const t0 = performance.now();
        acquires.push(await call(client, i));
        calls.push(performance.now() - t0);
      }
    }),
  );
  return { acquires, calls };
}

/** The HTTP path's and the engine's latency under load, the aggregator counting both. */
export async function underLoad(clientConfig: DynamoDBClientConfig & { endpoint: string }) {
  const client = new DynamoDB(clientConfig);
  await ensureTable(client, TABLE);
  const server = await spawnLocalServer({
    DYNAMODB_ENDPOINT: clientConfig.endpoint,
    SLUICE_TABLE_NAME: TABLE,
  });
  try {
    const sdk = new SluiceClient({ endpoint: server.url, onUnavailable: 'deny' });
    const http = async (c: number, i: number) => {
      const t0 = performance.now();
      const entity = `load-http-${c}-${i % 20}`;
      const lease = await sdk.acquire({
        entity,
        resource: 'gpt-4o',
        usage: USAGE,
        limits: [...LIMITS],
      });
      const acquired = performance.now() - t0;
      if (!lease.allowed) throw new Error('under load: the HTTP path refused');
      await sdk.release(lease.leaseId, USAGE);
      return acquired;
    };
    const engine = new Limiter({ store: new DynamoDBAdminStore({ client, tableName: TABLE }) });
    const limits = parseLimits([...LIMITS]);
    const direct = async (c: number, i: number) => {
      const t0 = performance.now();
      const entity = `load-engine-${c}-${i % 20}`;
      const lease = await engine.acquire({
        checks: [{ scope: 'entity', key: itemKeys.entityBucket(entity, 'gpt-4o'), limits }],
        usage: USAGE,
        context: { resource: 'gpt-4o', scopes: [{ entity, timezone: 'UTC' }] },
      });
      const acquired = performance.now() - t0;
      if (!lease.allowed) throw new Error('under load: the engine refused');
      await engine.release(lease.leaseId, USAGE);
      return acquired;
    };
    await turn(http); // warm both: caches, connections, JIT
    await turn(direct);
    const results = {
      http: [] as Awaited<ReturnType<typeof turn>>[],
      engine: [] as Awaited<ReturnType<typeof turn>>[],
    };
    for (let round = 0; round < 2; round++) {
      results.http.push(await turn(http));
      results.engine.push(await turn(direct));
    }
    const summary = (runs: Awaited<ReturnType<typeof turn>>[]) => {
      const acquires = runs.flatMap((r) => r.acquires);
      const calls = runs.flatMap((r) => r.calls);
      return {
        calls: calls.length,
        calls_per_s: Math.round(calls.length / ((runs.length * PHASE_MS) / 1_000)),
        p50_ms_acquire: ms(percentile(acquires, 0.5)),
        p99_ms_acquire: ms(percentile(acquires, 0.99)),
        p50_ms_call: ms(percentile(calls, 0.5)),
      };
    };
    const httpSummary = summary(results.http);
    const engineSummary = summary(results.engine);
    return {
      clients: CLIENTS,
      turn_ms: PHASE_MS,
      http: httpSummary,
      engine: engineSummary,
      /** The HTTP path's median acquire over the engine's: the target is at most 2. */
      ratio_p50_acquire: Number(
        (httpSummary.p50_ms_acquire / engineSummary.p50_ms_acquire).toFixed(2),
      ),
      ratio_p50_call: Number((httpSummary.p50_ms_call / engineSummary.p50_ms_call).toFixed(2)),
    };
  } finally {
    await server.stop();
  }
}
