/**
 * The handlers' OpenTelemetry metrics (docs/opentelemetry.md lists them), beside the CloudWatch
 * ones (metrics.ts, and acquire's decision log): recorded through `@opentelemetry/api`, an
 * optional peer dependency, into the `MeterProvider` the process registered globally (the ADOT
 * Lambda layer's, or an OTel SDK's around `npm start`).
 *
 * Nothing here runs at import time and nothing imports the package statically: the bundles leave
 * it out (scripts/bundle-handlers.ts), and the first decision loads it, once. Without it, or
 * without a registered provider, nothing is recorded and nothing throws; recording never holds an
 * answer back.
 */
import { createRequire } from 'node:module';
import type * as Otel from '@opentelemetry/api';
import type { AcquireResult, LimitStatus, SettleResult, Usage } from '@sluice/core';
import { leaseContextOf, type Tried } from '@sluice/core/internal';

/** The package, by a name esbuild leaves alone. */
export const OTEL_API = '@opentelemetry/api';

/** The instrumentation scope of the handlers' metrics. */
export const HANDLERS_SCOPE = '@sluice/lambdas';

/**
 * `1` adds the `sluice.entity` attribute to the handlers' metrics: one series per entity, so only
 * where entities are few. @default off
 */
export const OTEL_ENTITY_ENV = 'SLUICE_OTEL_ENTITY_ATTRIBUTE';

type OtelApi = typeof Otel;

const usable = (module: unknown): OtelApi | undefined => {
  const m = module as Partial<OtelApi> | undefined;
  return typeof m?.metrics?.getMeterProvider === 'function' ? (m as OtelApi) : undefined;
};

/**
 * `@opentelemetry/api`, or undefined when it cannot be loaded; never rejects. An ES import
 * first, then `require`, which also searches NODE_PATH, where Lambda puts a layer's packages.
 */
export async function loadOtelApi(specifier: string = OTEL_API): Promise<OtelApi | undefined> {
  try {
    const module: unknown = await import(/* @vite-ignore */ specifier);
    return usable(module) ?? usable((module as { default?: unknown }).default);
  } catch {
    try {
      return usable(createRequire(import.meta.url)(specifier));
    } catch {
      return undefined;
    }
  }
}

interface Instruments {
  readonly provider: Otel.MeterProvider;
  readonly decisions: Otel.Counter;
  readonly limitRefusals: Otel.Counter;
  readonly wait: Otel.Histogram;
  readonly headroom: Otel.Gauge;
  readonly duration: Otel.Histogram;
  readonly tokens: Otel.Counter;
  readonly cost: Otel.Counter;
}

function instrumentsOf(api: OtelApi, provider: Otel.MeterProvider): Instruments | undefined {
  const meter = provider.getMeter(HANDLERS_SCOPE);
  if (meter === api.createNoopMeter()) return undefined; // no provider registered
  const integer = { valueType: api.ValueType.INT };
  return {
    provider,
    decisions: meter.createCounter('sluice.decisions', {
      description: 'Acquire decisions answered',
      unit: '{decision}',
      ...integer,
    }),
    limitRefusals: meter.createCounter('sluice.limit.refusals', {
      description: 'Limits that refused an acquire, one for each limit of each resource tried',
      unit: '{refusal}',
      ...integer,
    }),
    wait: meter.createHistogram('sluice.wait.duration', {
      description: 'Waits reserved by admissions (wait_ms > 0)',
      unit: 's',
    }),
    headroom: meter.createGauge('sluice.limit.headroom', {
      description: 'Share of the tightest limit left after an admission (remaining / limit)',
      unit: '1',
    }),
    duration: meter.createHistogram('sluice.decision.duration', {
      description: 'Time the acquire handler took to answer a decision',
      unit: 's',
    }),
    tokens: meter.createCounter('sluice.usage.tokens', {
      description: 'Tokens settled by releases',
      unit: '{token}',
      ...integer,
    }),
    cost: meter.createCounter('sluice.usage.cost', {
      description: 'Cost settled by releases, in micro-USD',
      unit: '{micro_usd}',
      ...integer,
    }),
  };
}

let loading: Promise<OtelApi | undefined> | undefined;

/** {@link loadOtelApi}'s answer, loaded once for the process (the local server's metrics too). */
export function otelApi(): Promise<OtelApi | undefined> {
  loading ??= loadOtelApi();
  return loading;
}

let cached: Instruments | undefined;

/** Hands the instruments of the registered provider to `record`, once the API is loaded. */
function withInstruments(record: (instruments: Instruments) => void): void {
  void otelApi().then((api) => {
    if (!api) return;
    const provider = api.metrics.getMeterProvider();
    if (cached?.provider !== provider) cached = instrumentsOf(api, provider);
    if (cached) record(cached);
  });
}

type Attributes = Record<string, string | boolean>;

/** Model and (when asked for) entity attributes. */
function named(resource: string | undefined, entity: string | undefined): Attributes {
  return {
    ...(resource !== undefined ? { 'gen_ai.request.model': resource } : {}),
    ...(entity !== undefined && process.env[OTEL_ENTITY_ENV] === '1'
      ? { 'sluice.entity': entity }
      : {}),
  };
}

/** The kind of a limit's scope (`entity`, `parent`, `resource`), without the entity it names. */
const scopeKind = (scope: string) => scope.split(':', 1)[0] ?? scope;

/** The tightest limit of an admission: the least share remaining. */
function tightest(limits: readonly LimitStatus[]): LimitStatus | undefined {
  let least: LimitStatus | undefined;
  for (const l of limits) {
    if (!(l.limit > 0)) continue;
    if (!least || l.remaining / l.limit < least.remaining / least.limit) least = l;
  }
  return least;
}

/** A request's entity and resource, when its body names them. */
function namesOf(body: unknown): { entity?: string; resource?: string } {
  const { entity, resource } = (typeof body === 'object' && body !== null ? body : {}) as {
    entity?: unknown;
    resource?: unknown;
  };
  return {
    ...(typeof entity === 'string' ? { entity } : {}),
    ...(typeof resource === 'string' ? { resource } : {}),
  };
}

/**
 * An acquire's answer, as the edge sees it: 200 admitted, 429 and 422 refused (with `code`),
 * 5xx unavailable; any other status refused the request itself, which is no decision.
 */
export function decisionAnswered(
  body: unknown,
  status: number,
  code: string | undefined,
  startedAt: number,
): void {
  const outcome =
    status === 200
      ? 'admitted'
      : status === 429 || status === 422
        ? 'refused'
        : status >= 500
          ? 'unavailable'
          : undefined;
  if (!outcome) return;
  const seconds = (performance.now() - startedAt) / 1_000;
  withInstruments((i) => {
    const { entity, resource } = namesOf(body);
    const base = { ...named(resource, entity), 'sluice.decision.outcome': outcome };
    const detail =
      outcome === 'refused'
        ? { 'sluice.refusal.code': code ?? String(status) }
        : outcome === 'unavailable'
          ? { 'error.type': code ?? String(status) }
          : {};
    i.decisions.add(1, { ...base, ...detail });
    i.duration.record(seconds, base);
  });
}

/**
 * What the acquire handler alone knows: which limits refused, for each resource tried, and of
 * the admission, its reserved wait and its tightest limit.
 */
export function acquireDecided(entity: string, tried: readonly Tried[]): void {
  withInstruments((i) => {
    for (const { resource, result } of tried) {
      if (result.allowed) {
        admitted(i, named(resource, entity), result);
        continue;
      }
      for (const v of result.violations)
        i.limitRefusals.add(1, {
          ...named(resource, entity),
          'sluice.limit.name': v.name,
          'sluice.limit.scope': scopeKind(v.scope),
        });
    }
  });
}

function admitted(
  i: Instruments,
  base: Attributes,
  result: Extract<AcquireResult, { allowed: true }>,
): void {
  if (result.waitMs > 0) i.wait.record(result.waitMs / 1_000, base);
  const least = tightest(result.limits);
  if (least)
    i.headroom.record(least.remaining / least.limit, {
      ...base,
      'sluice.limit.name': least.name,
      'sluice.limit.scope': scopeKind(least.scope),
    });
}

/** A release answered: the totals it settled, by token type, and their cost. */
export function released(leaseId: string, result: SettleResult): void {
  if (!result.settled) return;
  withInstruments((i) => {
    const context = leaseContextOf(leaseId);
    const base = named(context?.resource, context?.scopes[0]?.entity);
    for (const [type, tokens] of tokenCounts(result.usage))
      i.tokens.add(tokens, type ? { ...base, 'gen_ai.token.type': type } : base);
    const cost = result.usage.cost_micro_usd;
    if (typeof cost === 'number' && cost > 0) i.cost.add(cost, base);
  });
}

/**
 * The tokens of a usage by type: input and output; `tokens` alone (no type) only when neither is
 * given, so that the sum over types is never counted twice.
 */
function tokenCounts(usage: Usage): [type: 'input' | 'output' | undefined, n: number][] {
  const counts: [type: 'input' | 'output' | undefined, n: number][] = [];
  const { input_tokens: input, output_tokens: output, tokens } = usage;
  if (typeof input === 'number' && input > 0) counts.push(['input', input]);
  if (typeof output === 'number' && output > 0) counts.push(['output', output]);
  if (input === undefined && output === undefined && typeof tokens === 'number' && tokens > 0)
    counts.push([undefined, tokens]);
  return counts;
}
