/**
 * OpenTelemetry metrics: the first decisions of a process.
 *
 * docs/opentelemetry.md says "the recorded counts equal the run's decisions",
 * and that with a provider registered before the first `acquire` every decision is recorded. A
 * short-lived process (a script, a Lambda whose OTel layer flushes at the end of each invocation)
 * awaits its calls and then flushes the provider: once `acquire` has returned, its decision is
 * expected to be in what the provider exports. OpenTelemetry's own instruments record
 * synchronously for exactly this reason.
 */

import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterAll, expect, it } from 'vitest';
import { SluiceClient } from '../../packages/client/src/index.js';

afterAll(() => metrics.disable());

/** Sluice answering 200 at once (no network): an admission with one limit. */
const admitting: typeof fetch = async () =>
  new Response(
    JSON.stringify({
      allowed: true,
      lease_id: 'lease.sig',
      wait_ms: 0,
      limits: [
        {
          scope: 'entity',
          name: 'rpm',
          metric: 'requests',
          limit: 100,
          remaining: 50,
          reset_ms: 1000,
        },
      ],
    }),
    { status: 200, headers: { 'content-type': 'application/json' } },
  );

it('exports all 50 concurrent first decisions when the provider is flushed after they were answered', async () => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  metrics.disable();
  expect(metrics.setGlobalMeterProvider(provider)).toBe(true);

  const sdk = new SluiceClient({ endpoint: 'http://localhost:1', fetch: admitting, retries: 0 });
  const answers = await Promise.all(
    Array.from({ length: 50 }, () => sdk.acquire({ entity: 'e', resource: 'm', usage: {} })),
  );
  expect(answers.every((a) => a.allowed && !a.degraded)).toBe(true);

  // The end of the invocation: the layer flushes what the process recorded.
  await provider.forceFlush();
  const decisions = exporter
    .getMetrics()
    .flatMap((r) => r.scopeMetrics)
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === 'sluice.client.decisions')
    .flatMap((m) => m.dataPoints as { value: unknown }[])
    .reduce((sum, p) => sum + (p.value as number), 0);
  expect(decisions).toBe(50);
  await provider.shutdown();
});

// The same in the handlers: a Lambda's cold-start invocation answers its decision, then the ADOT
// layer flushes the provider as the invocation ends; the decision must be in that export.
it("exports a cold handler's first decision when the provider is flushed after the answer", async () => {
  const { decisionAnswered } = await import('@sluice/lambdas/telemetry');
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  metrics.disable();
  expect(metrics.setGlobalMeterProvider(provider)).toBe(true);

  // The edge awaits it before the answer leaves (it waits only while the API loads).
  await decisionAnswered({ entity: 'e', resource: 'm' }, 200, undefined, performance.now() - 15);
  await provider.forceFlush(); // the end of the invocation
  const decisions = exporter
    .getMetrics()
    .flatMap((r) => r.scopeMetrics)
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === 'sluice.decisions')
    .flatMap((m) => m.dataPoints as { value: unknown }[])
    .reduce((sum, p) => sum + (p.value as number), 0);
  expect(decisions).toBe(1);
  await provider.shutdown();
});
