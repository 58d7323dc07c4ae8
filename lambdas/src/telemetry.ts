/**
 * The handlers' OpenTelemetry metrics (docs/opentelemetry.md lists them), beside the CloudWatch
 * ones (metrics.ts, and acquire's decision log): recorded through `@opentelemetry/api`, an
 * optional peer dependency, into the `MeterProvider` the process registered globally (the ADOT
 * Lambda layer's, or an OTel SDK's around `npm start`).
 *
 * Nothing imports the package statically: the bundles leave it out (scripts/bundle-handlers.ts).
 * A decision route's edge starts loading it as the handler's module loads (in the background, in
 * a container's init), so that each decision is recorded as it is answered, within its
 * invocation (one answered before the package loaded is recorded when it has). Without it, or
 * without a registered provider, nothing is recorded; a provider that throws loses its metrics,
 * never the answer (nothing here throws or rejects).
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
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    headroom: meter.createGauge('sluice.limit.headroom', {
      description: 'Share of the tightest limit left after an admission (remaining / limit)',
      unit: '1',
    }),
    duration: meter.createHistogram('sluice.decision.duration', {
      description: 'Time the acquire handler took to answer a decision',
      unit: 's',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
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
/** The API once loaded (undefined: not installed); null while it is loading, or not asked for. */
let loaded: OtelApi | undefined | null = null;

/** {@link loadOtelApi}'s answer, loaded once for the process (the local server's metrics too). */
export function otelApi(): Promise<OtelApi | undefined> {
  loading ??= loadOtelApi().then((api) => {
    loaded = api;
    return api;
  });
  return loading;
}

/**
 * Runs `use` with the API: now when it has loaded, else once it has; not at all without it.
 * Resolves once it has run (at once when the API had loaded): an answer that awaits it is
 * recorded within its invocation. Whatever `use` (or the provider it calls) throws is dropped:
 * metrics are lost, never an answer.
 */
export function withOtel(use: (api: OtelApi) => void): Promise<void> {
  const run = (api: OtelApi | undefined) => {
    if (!api) return;
    try {
      use(api);
    } catch {
      // The provider's failure (an instrument kind it lacks, an exporter that throws).
    }
  };
  if (loaded === null) return otelApi().then(run);
  run(loaded);
  return DONE;
}

const DONE = Promise.resolve();

/** Bucket boundaries of the duration histograms (seconds), OpenTelemetry's for HTTP durations. */
export const SECONDS_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

/** The instruments on the provider last seen, or the provider on which they could not be made. */
let cached:
  | Instruments
  | { readonly provider: Otel.MeterProvider; readonly broken: true }
  | undefined;

/** Hands the instruments of the registered provider to `record` (see {@link withOtel}). */
function withInstruments(record: (instruments: Instruments) => void): Promise<void> {
  return withOtel((api) => {
    const provider = api.metrics.getMeterProvider();
    if (cached?.provider !== provider) {
      cached = { provider, broken: true }; // until its instruments are made
      cached = instrumentsOf(api, provider);
    }
    if (cached && !('broken' in cached)) record(cached);
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
): Promise<void> {
  const outcome =
    status === 200
      ? 'admitted'
      : status === 429 || status === 422
        ? 'refused'
        : status >= 500
          ? 'unavailable'
          : undefined;
  if (!outcome) return DONE;
  const seconds = (performance.now() - startedAt) / 1_000;
  return withInstruments((i) => {
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
export function acquireDecided(entity: string, tried: readonly Tried[]): Promise<void> {
  return withInstruments((i) => {
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

/**
 * A release answered: the totals it settled, by token type, and their cost. The same release
 * sent again (its answer lost on the way) repeats the first answer and is not counted again.
 */
export function released(leaseId: string, result: SettleResult): Promise<void> {
  if (!result.settled || result.repeated) return DONE;
  return withInstruments((i) => {
    const context = leaseContextOf(leaseId);
    const base = named(context?.resource, context?.scopes[0]?.entity);
    for (const [type, tokens] of tokenCounts(result.usage))
      i.tokens.add(tokens, type ? { ...base, 'gen_ai.token.type': type } : base);
    const cost = result.usage.cost_micro_usd;
    if (typeof cost === 'number' && cost > 0) i.cost.add(cost, base);
  });
}

/**
 * The tokens of a usage by type: input and output, and what `tokens` holds beyond them (without
 * a type: a settlement may report its total alone), so that the sum over types is the total.
 */
function tokenCounts(usage: Usage): [type: 'input' | 'output' | undefined, n: number][] {
  const counts: [type: 'input' | 'output' | undefined, n: number][] = [];
  const n = (value: number | undefined) => (typeof value === 'number' && value > 0 ? value : 0);
  const input = n(usage.input_tokens);
  const output = n(usage.output_tokens);
  if (input > 0) counts.push(['input', input]);
  if (output > 0) counts.push(['output', output]);
  const beyond = n(usage.tokens) - input - output;
  if (beyond > 0) counts.push([undefined, beyond]);
  return counts;
}
