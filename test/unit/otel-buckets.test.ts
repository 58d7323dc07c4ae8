/**
 * OpenTelemetry metrics: the duration histograms' buckets.
 *
 * docs/opentelemetry.md promises a "decision latency histogram" in seconds
 * (`s`), named per OpenTelemetry's conventions. Those conventions record durations in seconds
 * *with* explicit bucket boundaries advice — for `http.server.request.duration` the semantic
 * conventions specify [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
 * — because the SDK's default boundaries (0, 5, 10, 25, 50, … 10000) were made for milliseconds.
 * A decision of 20 ms and one of 600 ms (a slow DynamoDB, a cold start) must be told apart: that
 * is what a p99 latency alert reads.
 */
import { metrics } from '@opentelemetry/api';
import { type Histogram, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { decisionAnswered } from '@sluice/lambdas/telemetry';
import { afterAll, expect, it } from 'vitest';
import { SluiceClient } from '../../packages/client/src/index.js';
import { requestAnswered } from '../../packages/local/src/telemetry.js';

class Collected extends MetricReader {
  protected override onShutdown = async () => {};
  protected override onForceFlush = async () => {};
}

afterAll(() => metrics.disable());

const reader = new Collected();
metrics.disable();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

/** The bucket counts of a histogram: how many recordings fell in each bucket. */
async function buckets(scope: string, name: string): Promise<number[]> {
  await new Promise((resolve) => setTimeout(resolve, 300)); // the API loads after the 1st answer
  const { resourceMetrics } = await reader.collect();
  const point = resourceMetrics.scopeMetrics
    .filter((s) => s.scope.name === scope)
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === name)?.dataPoints[0];
  const value = point?.value as Histogram | undefined;
  expect(value?.count).toBe(2);
  return value?.buckets.counts ?? [];
}

/** Two recordings fell into different buckets. */
const apart = (counts: number[]) => counts.filter((c) => c > 0).length;

it("the SDK's decision duration tells a 20 ms decision from a 600 ms one", async () => {
  const slowly =
    (ms: number): typeof fetch =>
    async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return new Response(
        JSON.stringify({ allowed: true, lease_id: 'l.s', wait_ms: 0, limits: [] }),
        {
          status: 200,
          headers: { 'content-type': 'application/json' },
        },
      );
    };
  const ask = { entity: 'e', resource: 'm', usage: {} };
  await new SluiceClient({ endpoint: 'http://localhost:1', fetch: slowly(20) }).acquire(ask);
  await new SluiceClient({ endpoint: 'http://localhost:1', fetch: slowly(600) }).acquire(ask);
  expect(apart(await buckets('@sluice/client', 'sluice.client.decision.duration'))).toBe(2);
});

it("the handlers' decision duration tells a 20 ms decision from a 600 ms one", async () => {
  const body = { entity: 'e', resource: 'm' };
  decisionAnswered(body, 200, undefined, performance.now() - 20);
  decisionAnswered(body, 200, undefined, performance.now() - 600);
  expect(apart(await buckets('@sluice/lambdas', 'sluice.decision.duration'))).toBe(2);
});

it("the local server's http.server.request.duration tells a 20 ms request from a 600 ms one", async () => {
  requestAnswered('POST', '/v1/acquire', 200, performance.now() - 20);
  requestAnswered('POST', '/v1/acquire', 200, performance.now() - 600);
  expect(apart(await buckets('@sluice/local', 'http.server.request.duration'))).toBe(2);
});
