/**
 * OpenTelemetry metrics: the attributes of degraded decisions.
 *
 * `error.type` is set on every degraded decision (OpenTelemetry's conventions make it what tells
 * a failed operation from a successful one): an operator alerting on it for a fail-open SDK
 * (onUnavailable: 'allow', the default) sees its outages.
 */
import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { afterAll, expect, it } from 'vitest';
import { SluiceClient } from '../../packages/client/src/index.js';

class Collected extends MetricReader {
  protected override onShutdown = async () => {};
  protected override onForceFlush = async () => {};
}

afterAll(() => metrics.disable());

function registered(): Collected {
  const reader = new Collected();
  metrics.disable();
  expect(metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))).toBe(true);
  return reader;
}

/** The attributes of the SDK's decision points, once the lazy API has loaded. */
async function decisionAttributes(reader: Collected) {
  await new Promise((resolve) => setTimeout(resolve, 300)); // the API loads after the 1st answer
  const { resourceMetrics }: { resourceMetrics: ResourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === 'sluice.client.decisions')
    .flatMap((m) => m.dataPoints.map((p) => p.attributes));
}

const answering =
  (status: number, body: unknown): typeof fetch =>
  async () =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

const ask = { entity: 'e', resource: 'm', usage: {} };

it('a fail-open degraded decision (Sluice answered 503 unavailable) carries error.type', async () => {
  const reader = registered();
  const sdk = new SluiceClient({
    endpoint: 'http://localhost:1',
    fetch: answering(503, { code: 'unavailable', retry_after_ms: 1000 }),
    retries: 0,
  });
  const result = await sdk.acquire(ask);
  expect(result).toMatchObject({ allowed: true, degraded: true });
  expect(await decisionAttributes(reader)).toEqual([
    {
      'gen_ai.request.model': 'm',
      'sluice.decision.outcome': 'degraded',
      'sluice.decision.allowed': true,
      'error.type': 'unavailable',
    },
  ]);
});
