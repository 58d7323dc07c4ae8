/**
 * The SDK's OpenTelemetry metrics (docs/opentelemetry.md lists them): recorded through
 * `@opentelemetry/api`, an optional peer dependency, into whatever `MeterProvider` the process
 * registered globally (the OTel SDK's, the ADOT Lambda layer's).
 *
 * Nothing here runs at import time, and the package is never imported statically: a client's
 * construction starts loading it (once, cached, in the background), so that by the first answer
 * it is there and each decision is recorded as it is answered (one answered before it loaded is
 * recorded when it has). Every recording asks for the global provider. Without the package, or
 * without a registered provider, nothing is recorded; a provider that throws loses its metrics,
 * never the call (nothing here throws or rejects).
 */
import { createRequire } from 'node:module';
import type * as Otel from '@opentelemetry/api';
import type { AcquireRequest, AcquireResult, LimitStatus, SettleResult, Usage } from './types.js';

/** The package, by a name bundlers leave alone: a consumer's bundle carries none of it. */
export const OTEL_API = '@opentelemetry/api';

/** The instrumentation scope of the SDK's metrics. */
export const CLIENT_SCOPE = '@sluice/client';

type OtelApi = typeof Otel;

const usable = (module: unknown): OtelApi | undefined => {
  const m = module as Partial<OtelApi> | undefined;
  return typeof m?.metrics?.getMeterProvider === 'function' ? (m as OtelApi) : undefined;
};

/**
 * `@opentelemetry/api`, or undefined when it cannot be loaded; never rejects. An ES import first
 * (the package beside the SDK), then `require`, which also searches NODE_PATH: a Lambda layer's
 * packages (the ADOT layer's) are found only there.
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

let loading: Promise<OtelApi | undefined> | undefined;
/** The API once loaded (undefined: not installed); null while it is loading, or not asked for. */
let loaded: OtelApi | undefined | null = null;

/** Starts loading the API, once for the process. */
export function startLoading(): Promise<OtelApi | undefined> {
  loading ??= loadOtelApi().then((api) => {
    loaded = api;
    return api;
  });
  return loading;
}

/** Bucket boundaries of the duration histograms (seconds), OpenTelemetry's for HTTP durations. */
export const SECONDS_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

/** The SDK's instruments on one provider. */
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
  const meter = provider.getMeter(CLIENT_SCOPE);
  if (meter === api.createNoopMeter()) return undefined; // no provider registered
  const integer = { valueType: api.ValueType.INT };
  return {
    provider,
    decisions: meter.createCounter('sluice.client.decisions', {
      description: 'Acquire decisions as the SDK received them',
      unit: '{decision}',
      ...integer,
    }),
    limitRefusals: meter.createCounter('sluice.client.limit.refusals', {
      description: 'Limits that refused an acquire, one for each limit of each refusal',
      unit: '{refusal}',
      ...integer,
    }),
    wait: meter.createHistogram('sluice.client.wait.duration', {
      description: 'Waits reserved by admissions (waitMs > 0)',
      unit: 's',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    headroom: meter.createGauge('sluice.client.limit.headroom', {
      description: 'Share of the tightest limit left after an admission (remaining / limit)',
      unit: '1',
    }),
    duration: meter.createHistogram('sluice.client.decision.duration', {
      description: 'Time of an acquire call, retries included',
      unit: 's',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    tokens: meter.createCounter('sluice.client.usage.tokens', {
      description: 'Tokens settled by releases the SDK sent',
      unit: '{token}',
      ...integer,
    }),
    cost: meter.createCounter('sluice.client.usage.cost', {
      description: 'Cost settled by releases the SDK sent, in micro-USD',
      unit: '{micro_usd}',
      ...integer,
    }),
  };
}

/** The instruments on the provider last seen, or the provider on which they could not be made. */
let cached:
  | Instruments
  | { readonly provider: Otel.MeterProvider; readonly broken: true }
  | undefined;

const DONE = Promise.resolve();

/**
 * Hands the instruments of the registered provider to `record`: now when the API has loaded,
 * else once it has. Resolves once it has run (at once when the API had loaded): the call that
 * awaits it answers with its decision recorded (only the first decisions of a process, while
 * the API loads, wait). A provider that throws (or lacks an instrument kind) records nothing.
 */
function withInstruments(record: (instruments: Instruments) => void): Promise<void> {
  const run = (api: OtelApi | undefined) => {
    if (!api) return;
    try {
      const provider = api.metrics.getMeterProvider();
      if (cached?.provider !== provider) {
        cached = { provider, broken: true }; // until its instruments are made
        cached = instrumentsOf(api, provider);
      }
      if (cached && !('broken' in cached)) record(cached);
    } catch {
      // The provider's failure: its metrics are lost, the call is not.
    }
  };
  if (loaded === null) return startLoading().then(run);
  run(loaded);
  return DONE;
}

/** Attributes of a decision or a settlement. */
type Attributes = Record<string, string | boolean>;

/** The kind of a limit's scope (`entity`, `parent`, `resource`), without the entity it names. */
const scopeKind = (scope: string) => scope.split(':', 1)[0] ?? scope;

/** The tightest limit of an admission: the least share remaining. */
export function tightest(limits: readonly LimitStatus[]): LimitStatus | undefined {
  let least: LimitStatus | undefined;
  for (const l of limits) {
    if (!(l.limit > 0)) continue;
    if (!least || l.remaining / l.limit < least.remaining / least.limit) least = l;
  }
  return least;
}

/**
 * The resource and entity a lease token names (its first part carries them, as Sluice signed
 * them), or nothing when it does not read as one.
 */
function leaseContext(leaseId: string): { resource?: string; entity?: string } {
  try {
    const claims = JSON.parse(Buffer.from(leaseId.split('.', 1)[0] ?? '', 'base64url').toString());
    const [resource, scopes] = (claims as { c?: [unknown, [unknown][]] }).c ?? [];
    const entity = scopes?.[0]?.[0];
    return {
      ...(typeof resource === 'string' ? { resource } : {}),
      ...(typeof entity === 'string' ? { entity } : {}),
    };
  } catch {
    return {};
  }
}

/** What the SDK records; one per client, with its choice of attributes. */
export class ClientMetrics {
  readonly #entity: boolean;

  constructor(options: { readonly entityAttribute?: boolean } = {}) {
    this.#entity = options.entityAttribute === true;
    void startLoading(); // in the background: loaded by the first answer
  }

  #base(resource: string | undefined, entity: string | undefined): Attributes {
    return {
      ...(resource !== undefined ? { 'gen_ai.request.model': resource } : {}),
      ...(this.#entity && entity !== undefined ? { 'sluice.entity': entity } : {}),
    };
  }

  /**
   * An acquire's answer, and when the call started (`performance.now()`); `unreached` says why a
   * degraded answer is (`unavailable`, or `internal` for Sluice's 500).
   */
  acquired(
    request: AcquireRequest,
    result: AcquireResult,
    startedAt: number,
    unreached?: string,
  ): Promise<void> {
    const seconds = (performance.now() - startedAt) / 1_000;
    return withInstruments((i) => {
      const base = this.#base(request.resource, request.entity);
      const outcome = result.degraded ? 'degraded' : result.allowed ? 'admitted' : 'refused';
      const decided: Attributes = { ...base, 'sluice.decision.outcome': outcome };
      if (result.degraded) {
        decided['sluice.decision.allowed'] = result.allowed;
        decided['error.type'] = result.allowed ? (unreached ?? 'unavailable') : result.code;
      } else if (!result.allowed) decided['sluice.refusal.code'] = result.code;
      i.decisions.add(1, decided);
      i.duration.record(seconds, { ...base, 'sluice.decision.outcome': outcome });
      if (!result.allowed) {
        for (const v of result.violations)
          i.limitRefusals.add(1, {
            ...this.#base(v.resource ?? request.resource, request.entity),
            'sluice.limit.name': v.name,
            'sluice.limit.scope': scopeKind(v.scope),
          });
        return;
      }
      if (result.degraded) return;
      const admitted = this.#base(result.resource, request.entity);
      if (result.waitMs > 0) i.wait.record(result.waitMs / 1_000, admitted);
      const least = tightest(result.limits);
      if (least)
        i.headroom.record(least.remaining / least.limit, {
          ...admitted,
          'sluice.limit.name': least.name,
          'sluice.limit.scope': scopeKind(least.scope),
        });
    });
  }

  /** A release's answer: the totals it settled, by token type, and their cost. */
  released(result: SettleResult): Promise<void> {
    if (result.degraded || !result.settled) return DONE;
    return withInstruments((i) => {
      const { resource, entity } = leaseContext(result.leaseId);
      const base = this.#base(resource, entity);
      for (const [type, tokens] of tokenCounts(result.usage))
        i.tokens.add(tokens, type ? { ...base, 'gen_ai.token.type': type } : base);
      const cost = result.usage.cost_micro_usd;
      if (typeof cost === 'number' && cost > 0) i.cost.add(cost, base);
    });
  }
}

/**
 * The tokens of a usage by type: input and output, and what `tokens` holds beyond them (without
 * a type: a settlement may report its total alone), so that the sum over types is the total.
 */
export function tokenCounts(usage: Usage): [type: 'input' | 'output' | undefined, n: number][] {
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
