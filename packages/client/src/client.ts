/**
 * SluiceClient: HTTP API v1 over Node's HTTP client, SigV4-signed with the caller's AWS
 * credentials (in a Lambda, its role), retried on network errors and 5xx with exponential backoff
 * and full jitter within one deadline, and failing open or closed when Sluice cannot be reached.
 */
import { requestErrorFrom, SluiceClientError } from './errors.js';
import type { Credentials } from './signing.js';
import { ClientMetrics } from './telemetry.js';
import { type Answer, type Sender, strictRequest, Transport } from './transport.js';
import type {
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  LimitInput,
  SettleResult,
  Usage,
  UsageHistory,
  UsageQuery,
} from './types.js';
import {
  acquireBody,
  adjustBody,
  admissionFrom,
  availableBody,
  availableFrom,
  refusalFrom,
  releaseBody,
  settledFrom,
  unreachedFrom,
  usageHistoryFrom,
} from './wire.js';

/** How {@link SluiceClient} reaches Sluice and behaves when it cannot. */
export interface SluiceClientOptions {
  /** The API's base URL, e.g. `https://abc123.execute-api.eu-west-1.amazonaws.com`. */
  readonly endpoint: string;
  /** @default from the endpoint's host name, else AWS_REGION */
  readonly region?: string;
  /** @default the AWS SDK's default chain (the Lambda's role); none for http://localhost */
  readonly credentials?: Credentials;
  /** Deadline for one call, retries included. @default 3_000 */
  readonly timeoutMs?: number;
  /** Retries after the first attempt, on network errors and 5xx only. @default 2 */
  readonly retries?: number;
  /**
   * What a caller gets when Sluice cannot be reached: `allow` lets the call through (fail
   * open), `deny` refuses it (fail closed). Either way the answer says `degraded: true`.
   * @default 'allow'
   */
  readonly onUnavailable?: 'allow' | 'deny';
  /** Sends through this instead of Node's HTTP client (a proxy's, a test's). @default none */
  readonly fetch?: typeof fetch;
  /** How the client waits (retry backoff, a reserved `waitMs`). @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
  /**
   * OpenTelemetry metrics, recorded when `@opentelemetry/api` is installed and a `MeterProvider`
   * is registered globally (docs/opentelemetry.md). `entityAttribute` adds `sluice.entity` to
   * them: one series per entity, so only where entities are few. @default { entityAttribute: false }
   */
  readonly otel?: { readonly entityAttribute?: boolean };
}

/** Acquire's answers that are refusals, not errors: 429 (retry later) and 422 (never as asked). */
const REFUSALS = [429, 422] as const;

/** Lease ids handed out while Sluice was unreachable: settling them records nothing. */
const DEGRADED_PREFIX = 'degraded.';

/**
 * The option a client built on this one (the in-process entry's) passes its own {@link Sender}
 * in; not part of the options users pass, and the main entry does not export it.
 */
export const SENDER: unique symbol = Symbol('sluice.sender');

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The Sluice SDK.
 *
 * @example
 * const sluice = new SluiceClient({ endpoint: process.env.SLUICE_URL! });
 * const result = await sluice.withLease(
 *   { entity: 'key-123', resource: 'gpt-4o', usage: { input_tokens: 1_500, output_tokens: 500 } },
 *   async () => {
 *     const completion = await openai.chat.completions.create({ ... });
 *     return { value: completion, usage: { input_tokens: completion.usage.prompt_tokens, output_tokens: completion.usage.completion_tokens } };
 *   },
 * );
 * if (!result.allowed) return tooMany(result.retryAfterMs);
 */
export class SluiceClient {
  readonly #transport: Sender;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #onUnavailable: 'allow' | 'deny';
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #metrics: ClientMetrics;

  constructor(options: SluiceClientOptions) {
    this.#transport = (options as { [SENDER]?: Sender })[SENDER] ?? new Transport(options);
    this.#timeoutMs = options.timeoutMs ?? 3_000;
    this.#retries = options.retries ?? 2;
    this.#onUnavailable = options.onUnavailable ?? 'allow';
    this.#sleep = options.sleep ?? realSleep;
    this.#metrics = new ClientMetrics(options.otel);
  }

  /**
   * May this call go ahead? Refusals (429, and the 422s no retry changes) and outages are values,
   * with Sluice's `code`; the refusals of the request itself (400, 403, 404, 409, 413, 415) throw
   * {@link SluiceRequestError}.
   */
  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const startedAt = performance.now();
    const { result, unreached } = await this.#acquire(request);
    await this.#metrics.acquired(request, result, startedAt, unreached);
    return result;
  }

  /** The answer; when Sluice could not be reached, why (a refusal's code, as it would say). */
  async #acquire(request: AcquireRequest): Promise<{ result: AcquireResult; unreached?: string }> {
    const answer = await this.#call('/v1/acquire', acquireBody(request), REFUSALS);
    if ('unreached' in answer) {
      const refusal = unreachedFrom(answer.unreached?.body);
      if (this.#onUnavailable !== 'allow') return { result: refusal, unreached: refusal.code };
      const admission = {
        allowed: true,
        leaseId: `${DEGRADED_PREFIX}${Date.now()}`,
        waitMs: 0,
        resource: request.resource,
        fellBack: false,
        limits: [],
        degraded: true,
      } as const;
      return { result: admission, unreached: refusal.code };
    }
    const headers = answer.headers ?? {};
    return answer.status === 200
      ? { result: admissionFrom(answer.body, request, headers) }
      : { result: refusalFrom(answer.status, answer.body, headers) };
  }

  /**
   * An entity's usage history: what its settled leases used per hour, day or month, and its
   * refusals. Throws {@link SluiceClientError} when Sluice cannot be reached.
   */
  async usage(query: UsageQuery): Promise<UsageHistory> {
    const params = new URLSearchParams({ entity: query.entity });
    if (query.granularity) params.set('granularity', query.granularity);
    const when = (v: string | Date) => (v instanceof Date ? v.toISOString() : v);
    if (query.from) params.set('from', when(query.from));
    if (query.to) params.set('to', when(query.to));
    if (query.resource) params.set('resource', query.resource);
    const answer = await strictRequest(
      this.#transport,
      'GET',
      `/v1/usage?${params}`,
      this.#timeoutMs,
    );
    return usageHistoryFrom(answer.body);
  }

  /** Reports the actual usage so far (totals). Safe to repeat: applied exactly once. */
  adjust(leaseId: string, usage: Usage): Promise<SettleResult> {
    return this.#settle('/v1/adjust', leaseId, usage);
  }

  /** Settles with final totals, or, without usage, gives the whole reservation back. */
  async release(leaseId: string, usage?: Usage): Promise<SettleResult> {
    const result = await this.#settle('/v1/release', leaseId, usage);
    await this.#metrics.released(result); // waits only while the API loads
    return result;
  }

  /** What remains, and when `usage` would fit; consumes nothing. */
  async available(request: {
    entity: string;
    resource: string;
    usage?: Usage;
    limits?: readonly LimitInput[];
  }): Promise<AvailableResult> {
    const answer = await this.#call('/v1/available', availableBody(request), []);
    if ('unreached' in answer) return { limits: [], retryAfterMs: null, degraded: true };
    return availableFrom(answer.body);
  }

  /**
   * Acquire, wait the reserved `waitMs`, run `fn`, then settle with the usage `fn` reports; if
   * `fn` throws, give the reservation back and rethrow.
   */
  async withLease<T>(
    request: AcquireRequest,
    fn: (lease: { leaseId: string; resource: string }) => Promise<{ value: T; usage: Usage }>,
  ): Promise<
    ({ allowed: true; value: T; usage: Usage } | Extract<AcquireResult, { allowed: false }>) & {
      degraded: boolean;
    }
  > {
    const lease = await this.acquire(request);
    if (!lease.allowed) return lease;
    if (lease.waitMs > 0) await this.#sleep(lease.waitMs);
    let outcome: { value: T; usage: Usage };
    try {
      outcome = await fn({ leaseId: lease.leaseId, resource: lease.resource });
    } catch (error) {
      await this.release(lease.leaseId).catch(() => undefined);
      throw error;
    }
    await this.release(lease.leaseId, outcome.usage);
    return { allowed: true, value: outcome.value, usage: outcome.usage, degraded: lease.degraded };
  }

  /**
   * Tracks a streaming call: `update()` running totals as chunks arrive (adjusts are coalesced
   * and sent in order, at most one in flight), `end()` settles, `abort()` settles with what was
   * used so far — or gives everything back if nothing was.
   */
  stream(leaseId: string, options: { minIntervalMs?: number } = {}): LeaseStream {
    return new LeaseStream(this, leaseId, options.minIntervalMs ?? 250);
  }

  async #settle(path: string, leaseId: string, usage: Usage | undefined): Promise<SettleResult> {
    if (leaseId.startsWith(DEGRADED_PREFIX)) {
      return {
        leaseId,
        settled: path === '/v1/release',
        usage: usage ?? {},
        limits: [],
        degraded: true,
      };
    }
    const body =
      path === '/v1/adjust' ? adjustBody(leaseId, usage ?? {}) : releaseBody(leaseId, usage);
    const answer = await this.#call(path, body, []);
    if ('unreached' in answer)
      return { leaseId, settled: false, usage: usage ?? {}, limits: [], degraded: true };
    return settledFrom(leaseId, answer.body);
  }

  /**
   * POSTs with retries on network errors, timeouts, 5xx and unreadable answers, within one
   * deadline; 2xx and `expected` statuses are answers, other 4xx throw. Not answered in time, it
   * says so, with Sluice's last 5xx answer if there was one (its `code`, its `retry_after_ms`).
   */
  async #call(
    path: string,
    body: unknown,
    expected: readonly number[],
  ): Promise<Answer | { readonly unreached: Answer | undefined }> {
    let last: Answer | undefined;
    const deadline = Date.now() + this.#timeoutMs;
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) {
        const backoff = Math.random() * Math.min(1_000, 50 * 2 ** attempt); // full jitter
        if (Date.now() + backoff >= deadline) break;
        await this.#sleep(backoff);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      let answer: Answer;
      try {
        answer = await this.#transport.send('POST', path, body, remaining);
      } catch (error) {
        if (error instanceof SluiceClientError) throw error; // the sender's own verdict
        continue; // network error or timeout: retry within the deadline
      }
      if (answer.status >= 500) {
        last = answer.json ? answer : undefined;
        continue;
      }
      if (answer.status < 300 || expected.includes(answer.status)) {
        if (answer.json) return answer;
        continue; // not Sluice's answer (a proxy's page): as if unreachable
      }
      throw requestErrorFrom(answer.status, answer.body);
    }
    return { unreached: last }; // reported as `degraded: true`, per onUnavailable
  }
}

/** Running totals of a streaming call; see {@link SluiceClient.stream}. */
export class LeaseStream {
  #totals: Usage = {};
  #sent: Usage | undefined;
  #inFlight: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #done = false;

  constructor(
    private readonly client: SluiceClient,
    readonly leaseId: string,
    private readonly minIntervalMs: number,
  ) {}

  /** Records running totals; an adjust follows within `minIntervalMs`. */
  update(totals: Usage): void {
    if (this.#done) return;
    this.#totals = { ...this.#totals, ...totals };
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, this.minIntervalMs);
  }

  /** Settles with the final totals (given, or the last updated). */
  async end(totals?: Usage): Promise<SettleResult> {
    if (totals) this.#totals = { ...this.#totals, ...totals };
    return this.#finish(this.#totals);
  }

  /** The call was cut short: settle with what was used so far, or give it all back. */
  async abort(): Promise<SettleResult> {
    return this.#finish(Object.keys(this.#totals).length > 0 ? this.#totals : undefined);
  }

  #flush(): void {
    if (this.#done || this.#sent === this.#totals) return;
    const totals = this.#totals;
    this.#sent = totals;
    this.#inFlight = this.#inFlight
      .then(() => this.client.adjust(this.leaseId, totals))
      .catch(() => undefined);
  }

  async #finish(totals: Usage | undefined): Promise<SettleResult> {
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#inFlight;
    return this.client.release(this.leaseId, totals);
  }
}
