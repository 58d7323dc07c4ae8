/**
 * OpenTelemetry metrics, end to end: the SDK calls the local server in this process, so one
 * global MeterProvider (the OTel SDK's, with a reader collected on demand) receives the SDK's
 * metrics (scope @sluice/client), the handlers' (@sluice/lambdas) and the local server's own
 * (@sluice/local). The recorded counts must be exactly the run's decisions and settlements.
 */
import { metrics } from '@opentelemetry/api';
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { type LimitInput, SluiceClient } from '@sluice/client';
import { ensureTable } from '@sluice/core';
import { routes } from '@sluice/lambdas/routes';
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type LocalServer,
  localClient,
  startLocalServer,
} from '@sluice/local';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { put } from '../support/admin.js';
import { tableName } from '../support/api.js';

/** A reader the test collects from when it chooses. */
class Collected extends MetricReader {
  protected override onShutdown = async () => {};
  protected override onForceFlush = async () => {};
}

type Attributes = Record<string, unknown>;

/** The data points of one metric of one scope, by attributes. */
function pointsOf(collected: ResourceMetrics, scope: string, name: string): DataPoint<unknown>[] {
  const metric = collected.scopeMetrics
    .filter((s) => s.scope.name === scope)
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []) as DataPoint<unknown>[];
}

/** The sum of a counter's points whose attributes include `match` (a histogram's count). */
function total(collected: ResourceMetrics, scope: string, name: string, match: Attributes = {}) {
  return pointsOf(collected, scope, name)
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((sum, p) => {
      const value = p.value as number | Histogram;
      return sum + (typeof value === 'number' ? value : value.count);
    }, 0);
}

/** A new provider, registered globally in place of any other, and its reader. */
function registered(): Collected {
  const reader = new Collected();
  metrics.disable(); // the API keeps the first provider registered, refusing others
  expect(metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))).toBe(true);
  return reader;
}

async function collect(reader: Collected): Promise<ResourceMetrics> {
  await new Promise((resolve) => setImmediate(resolve)); // recording follows each answer
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  return resourceMetrics;
}

const SDK = '@sluice/client';
const HANDLERS = '@sluice/lambdas';
const LOCAL = '@sluice/local';
const MODEL = 'otel-model';
const rpm: LimitInput = { name: 'rpm', metric: 'requests', limit: 3, per: 'minute' };

let server: LocalServer;

beforeAll(async () => {
  const endpoint = inject('dynamoEndpoint');
  const table = tableName('otel');
  Object.assign(process.env, {
    SLUICE_TABLE_NAME: table,
    SLUICE_DYNAMODB_ENDPOINT: endpoint,
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
    SLUICE_OTEL_ENTITY_ATTRIBUTE: '1',
  });
  process.env.AWS_REGION ??= LOCAL_REGION;
  process.env.AWS_ACCESS_KEY_ID ??= LOCAL_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY ??= LOCAL_CREDENTIALS.secretAccessKey;
  const client = localClient(endpoint);
  await ensureTable(client, table);
  client.destroy();
  server = await startLocalServer({ routes });
  // $3 and $15 per million tokens: 3 and 15 micro-USD a token, exactly.
  await put(server.url, `resources/${MODEL}`, { price: { input: '3', output: '15' } });
});

afterAll(async () => {
  metrics.disable();
  await server?.close();
});

describe('without a MeterProvider registered', () => {
  it('records nothing, and the SDK and the handlers answer as ever', async () => {
    metrics.disable();
    const sdk = new SluiceClient({ endpoint: server.url });
    const lease = await sdk.acquire({
      entity: 'otel-none',
      resource: MODEL,
      usage: {},
      limits: [rpm],
    });
    expect(lease).toMatchObject({ allowed: true, degraded: false });
    if (!lease.allowed) return;
    await sdk.release(lease.leaseId, { input_tokens: 10, output_tokens: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    // A provider registered now has seen none of it.
    const reader = registered();
    const collected = await collect(reader);
    expect(collected.scopeMetrics.flatMap((s) => s.metrics)).toEqual([]);
    metrics.disable();
  });
});

describe('with a MeterProvider registered', () => {
  it('counts exactly the decisions and settlements of a run, in the SDK and in the handlers', async () => {
    const reader = registered();
    const sdk = new SluiceClient({ endpoint: server.url, otel: { entityAttribute: true } });
    const entity = `otel-${Date.now()}`;
    const ask = (extra: object = {}) =>
      sdk.acquire({ entity, resource: MODEL, usage: {}, limits: [rpm], ...extra });

    // 3 admitted at once, 1 admitted with a reserved wait, 2 refused by `rpm`, and 1 refused
    // for a cost limit on a resource with no price (a 422 the engine throws).
    const admitted = [await ask(), await ask(), await ask(), await ask({ maxWaitMs: 60_000 })];
    const refused = [await ask(), await ask()];
    const unpriced = await sdk.acquire({
      entity,
      resource: 'otel-unpriced',
      usage: { input_tokens: 1 },
      limits: [{ name: 'budget', metric: 'cost_micro_usd', limit: 1_000, window: 'day' }],
    });
    const leases = admitted.map((a) => (a.allowed ? a : expect.fail('not admitted')));
    expect(refused.map((r) => (r.allowed ? 'admitted' : r.code))).toEqual([
      'rate_limited',
      'rate_limited',
    ]);
    expect(unpriced).toMatchObject({ allowed: false, code: 'price_unknown' });
    const reserved = leases[3] ?? expect.fail('no reservation');
    expect(reserved.waitMs).toBeGreaterThan(0);

    // Released: 1000 + 200, 500 + 100, 10 + 0 tokens; the reservation given back unused.
    const usages = [
      { input_tokens: 1_000, output_tokens: 200 },
      { input_tokens: 500, output_tokens: 100 },
      { input_tokens: 10, output_tokens: 0 },
    ];
    const settled = await Promise.all(
      usages.map((u, i) => sdk.release(leases[i]?.leaseId ?? '', u)),
    );
    await sdk.release(reserved.leaseId);
    expect(settled.map((s) => s.usage.cost_micro_usd)).toEqual([6_000, 3_000, 30]);

    const collected = await collect(reader);
    for (const [scope, prefix] of [
      [SDK, 'sluice.client.'],
      [HANDLERS, 'sluice.'],
    ] as const) {
      const n = (name: string, match: Attributes = {}) =>
        total(collected, scope, prefix + name, match);
      const mine = { 'sluice.entity': entity };
      expect(n('decisions', { ...mine, 'sluice.decision.outcome': 'admitted' }), scope).toBe(4);
      expect(n('decisions', { ...mine, 'sluice.decision.outcome': 'refused' }), scope).toBe(3);
      expect(n('decisions', { 'sluice.refusal.code': 'rate_limited' }), scope).toBe(2);
      expect(n('decisions', { 'sluice.refusal.code': 'price_unknown' }), scope).toBe(1);
      expect(n('decisions', { 'gen_ai.request.model': MODEL }), scope).toBe(6);
      expect(n('limit.refusals', { 'sluice.limit.name': 'rpm', ...mine }), scope).toBe(2);
      expect(n('limit.refusals'), scope).toBe(2);
      expect(n('decision.duration', mine), scope).toBe(7);
      expect(n('usage.tokens', { 'gen_ai.token.type': 'input', ...mine }), scope).toBe(1_510);
      expect(n('usage.tokens', { 'gen_ai.token.type': 'output', ...mine }), scope).toBe(300);
      expect(n('usage.tokens', { 'gen_ai.request.model': MODEL }), scope).toBe(1_810);
      expect(n('usage.cost', { 'gen_ai.request.model': MODEL, ...mine }), scope).toBe(9_030);

      const [wait, ...moreWaits] = pointsOf(collected, scope, `${prefix}wait.duration`);
      expect(moreWaits, scope).toEqual([]);
      const waited = wait?.value as Histogram | undefined;
      expect(waited?.count, scope).toBe(1);
      expect(waited?.sum, scope).toBe(reserved.waitMs / 1_000);

      // The last admission's tightest limit: what the SDK was answered.
      const limit = reserved.limits.find((l) => l.name === 'rpm') ?? expect.fail('no rpm');
      const headroom = pointsOf(collected, scope, `${prefix}limit.headroom`);
      expect(
        headroom.map((p) => [p.attributes['sluice.limit.name'], p.value]),
        scope,
      ).toEqual([['rpm', limit.remaining / limit.limit]]);
    }

    // The local server's own: every request a route answered, by route and status.
    const requests = (route: string, status: number) =>
      total(collected, LOCAL, 'http.server.request.duration', {
        'http.route': route,
        'http.response.status_code': status,
      });
    expect(requests('/v1/acquire', 200)).toBe(4);
    expect(requests('/v1/acquire', 429)).toBe(2);
    expect(requests('/v1/acquire', 422)).toBe(1);
    expect(requests('/v1/release', 200)).toBe(4);
  });

  it('counts an unreachable Sluice as degraded in the SDK', async () => {
    const reader = registered();
    const closed = await startLocalServer({ routes: [] });
    await closed.close();
    const sdk = new SluiceClient({ endpoint: closed.url, retries: 0, timeoutMs: 500 });
    const result = await sdk.acquire({ entity: 'otel-degraded', resource: MODEL, usage: {} });
    expect(result).toMatchObject({ allowed: true, degraded: true });
    const collected = await collect(reader);
    expect(
      total(collected, SDK, 'sluice.client.decisions', {
        'sluice.decision.outcome': 'degraded',
        'sluice.decision.allowed': true,
      }),
    ).toBe(1);
    expect(total(collected, SDK, 'sluice.client.decisions')).toBe(1);
    expect(pointsOf(collected, SDK, 'sluice.client.decisions')[0]?.attributes).not.toHaveProperty(
      'sluice.entity',
    );
  });
});
