/**
 * OpenTelemetry metrics: a release that reports the total only.
 *
 * docs/opentelemetry.md says `sluice.usage.tokens` counts "the totals Sluice
 * settled", by `gen_ai.token.type`, and that `tokens` "is their sum otherwise". A caller that
 * estimated input and output at acquire and reports its final total as `tokens` (a provider that
 * only returns total_tokens) has 700 tokens settled: Sluice's answer says `tokens: 700`, token
 * limits and usage history are charged 700. The metric must say 700 too.
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

const MODEL = 'otel-total-model';
let server: LocalServer;

beforeAll(async () => {
  const endpoint = inject('dynamoEndpoint');
  const table = tableName('oteltotal');
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

  await new Promise((resolve) => setTimeout(resolve, 300)); // the API loads after the 1st answer
  const { resourceMetrics } = await reader.collect();
  expect(total(resourceMetrics, '@sluice/client', 'sluice.client.usage.tokens')).toBe(700);
  expect(total(resourceMetrics, '@sluice/lambdas', 'sluice.usage.tokens')).toBe(700);
});
