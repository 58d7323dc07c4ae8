/**
 * OpenTelemetry metrics of settlements, through the SDK against the local server in this
 * process (one provider sees both scopes): tokens settled are counted exactly, by the SDK and by
 * the handlers alike. A release the SDK sent again after its answer was lost (the user called
 * `release` once, for one lease settled once) counts once; a release that reports its total
 * alone (`tokens`, beyond the input and output estimated) counts that total.
 */
import { metrics } from '@opentelemetry/api';
import {
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { SluiceClient } from '@sluice/client';
import { ensureTable } from '@sluice/core';
import { routes } from '@sluice/lambdas/routes';
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type LocalServer,
  localClient,
  startLocalServer,
} from '@sluice/local';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { put } from '../support/admin.js';
import { tableName } from '../support/api.js';

class Collected extends MetricReader {
  protected override onShutdown = async () => {};
  protected override onForceFlush = async () => {};
}

function total(collected: ResourceMetrics, scope: string, name: string): number {
  return collected.scopeMetrics
    .filter((s) => s.scope.name === scope)
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === name)
    .flatMap((m) => m.dataPoints as { value: unknown }[])
    .reduce((sum, p) => {
      const value = p.value as number | Histogram;
      return sum + (typeof value === 'number' ? value : value.count);
    }, 0);
}

const MODEL = 'otel-retry-model';
let server: LocalServer;

beforeAll(async () => {
  const endpoint = inject('dynamoEndpoint');
  const table = tableName('otelsettle');
  Object.assign(process.env, {
    SLUICE_TABLE_NAME: table,
    SLUICE_DYNAMODB_ENDPOINT: endpoint,
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  process.env.AWS_REGION ??= LOCAL_REGION;
  process.env.AWS_ACCESS_KEY_ID ??= LOCAL_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY ??= LOCAL_CREDENTIALS.secretAccessKey;
  const client = localClient(endpoint);
  await ensureTable(client, table);
  client.destroy();
  server = await startLocalServer({ routes });
  await put(server.url, `resources/${MODEL}`, { price: { input: '3', output: '15' } });
});

afterAll(async () => {
  metrics.disable();
  await server?.close();
});

it('counts a lease released once (its first answer lost, the SDK retrying) once, in the SDK and in the handlers', async () => {
  const reader = new Collected();
  metrics.disable();
  expect(metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))).toBe(true);

  // The network: the first release reaches Sluice, and its answer is lost on the way back.
  let releases = 0;
  const lossy: typeof fetch = async (input, init) => {
    const answer = await fetch(input, init);
    if (String(input).endsWith('/v1/release') && ++releases === 1) {
      await answer.arrayBuffer();
      throw new TypeError('fetch failed: socket hang up');
    }
    return answer;
  };
  const sdk = new SluiceClient({ endpoint: server.url, fetch: lossy, sleep: async () => {} });
  const lease = await sdk.acquire({
    entity: 'otel-retry',
    resource: MODEL,
    usage: {},
    limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
  });
  if (!lease.allowed) return expect.fail('not admitted');
  const settled = await sdk.release(lease.leaseId, { input_tokens: 100, output_tokens: 10 });
  expect(settled).toMatchObject({ settled: true, degraded: false });
  expect(releases).toBe(2); // one call from the user, two sent by the SDK

  const { resourceMetrics } = await reader.collect();
  expect(total(resourceMetrics, '@sluice/client', 'sluice.client.usage.tokens')).toBe(110);
  expect(total(resourceMetrics, '@sluice/lambdas', 'sluice.usage.tokens')).toBe(110);
  expect(total(resourceMetrics, '@sluice/lambdas', 'sluice.usage.cost')).toBe(450);
});

it('counts the tokens a release settled when it reports the total only', async () => {
  const reader = new Collected();
  metrics.disable();
  expect(metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))).toBe(true);
  const sdk = new SluiceClient({ endpoint: server.url });
  const lease = await sdk.acquire({
    entity: 'otel-total',
    resource: MODEL,
    usage: { input_tokens: 500, output_tokens: 100 },
    limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }],
  });
  if (!lease.allowed) return expect.fail('not admitted');
  const settled = await sdk.release(lease.leaseId, { tokens: 700 });
  expect(settled).toMatchObject({ settled: true, usage: { tokens: 700 } });

  const { resourceMetrics } = await reader.collect();
  expect(total(resourceMetrics, '@sluice/client', 'sluice.client.usage.tokens')).toBe(700);
  expect(total(resourceMetrics, '@sluice/lambdas', 'sluice.usage.tokens')).toBe(700);
});
