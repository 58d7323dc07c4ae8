/**
 * What the framework integrations (`@sluice/client/ai-sdk`, `@sluice/client/langchain`) share:
 * the refusal as an error a caller can answer with, the acquire before a model call, and a
 * lease that settles exactly once whatever ends the call (its result, an error, an abort, the
 * consumer walking away) and in whatever order those arrive.
 */
import type { SluiceClient } from './client.js';
import { SluiceClientError } from './errors.js';
import { refusalResponse } from './middy.js';
import type { AcquireRequest, AcquireResult, LimitStatus, Usage, Violation } from './types.js';

type Refusal = Extract<AcquireResult, { allowed: false }>;
type Admission = Extract<AcquireResult, { allowed: true }>;

/**
 * Sluice refused a model call, which was therefore not made. `status` is what to answer your own
 * caller (429 `rate_limited`; 422 for a request that never fits as asked; 503 when Sluice could
 * not answer and the client fails closed), `headers` Sluice's `retry-after` and rate-limit
 * headers, and {@link SluiceRefusedError.toResponse} that answer as a web `Response`.
 */
export class SluiceRefusedError extends SluiceClientError {
  /** When to retry: a 429's wait; null when no retry changes the answer (a 422). */
  readonly retryAfterMs: number | null;
  /** The limits that refused. */
  readonly violations: readonly Violation[];
  readonly limits: readonly LimitStatus[];
  /** Sluice's `retry-after`, `retry-after-ms`, `ratelimit` and `x-ratelimit-*` headers. */
  readonly headers: Readonly<Record<string, string>>;
  /** True when Sluice could not be reached and the client fails closed. */
  readonly degraded: boolean;
  /** The acquire's answer, whole. */
  readonly refusal: Refusal;
  readonly #body: string;

  constructor(refusal: Refusal, resource: string) {
    const answer = refusalResponse(refusal);
    super(
      refusal.code,
      `Sluice refused the call to ${resource}: ${refusal.code}` +
        (refusal.retryAfterMs === null ? '' : `, retry after ${refusal.retryAfterMs} ms`),
      answer.statusCode,
    );
    this.retryAfterMs = refusal.retryAfterMs;
    this.violations = refusal.violations;
    this.limits = refusal.limits;
    const { 'content-type': _, ...headers } = answer.headers;
    this.headers = headers;
    this.degraded = refusal.degraded;
    this.refusal = refusal;
    this.#body = answer.body;
  }

  /** The refusal as your caller should get it: this status, these headers, a problem+json body. */
  toResponse(): Response {
    return new Response(this.#body, {
      status: this.status ?? 429,
      headers: { ...this.headers, 'content-type': 'application/problem+json' },
    });
  }
}

/** What the integrations are given besides the client. */
export interface GuardSettings {
  readonly client: SluiceClient;
  /**
   * Hears of a settle that failed (Sluice unreachable past its retries, or refusing the settle):
   * the model call's result stands either way. @default one `console.error` line with the code
   */
  readonly onSettleError?: (error: unknown, leaseId: string) => void;
  /** How a reserved `waitMs` is waited before the call. @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function logSettleError(error: unknown, leaseId: string): void {
  const { code, message } = error as { code?: string; message?: string };
  console.error(
    `sluice: settling lease ${leaseId.slice(0, 12)}… failed: ${code ?? ''} ${message ?? error}`,
  );
}

/**
 * A lease on one model call. {@link GuardedCall.settle} releases it once: the first call decides
 * (with usage, the totals; without, the reservation given back) and every later one returns the
 * same promise. It never rejects: a failed settle goes to `onSettleError`.
 */
export class GuardedCall {
  #settled: Promise<void> | undefined;

  constructor(
    readonly admission: Admission,
    readonly request: AcquireRequest,
    private readonly settings: GuardSettings,
  ) {}

  get leaseId(): string {
    return this.admission.leaseId;
  }

  /** True once a settle has begun. */
  get settled(): boolean {
    return this.#settled !== undefined;
  }

  settle(usage?: Usage): Promise<void> {
    this.#settled ??= this.settings.client.release(this.leaseId, usage).then(
      () => undefined,
      (error: unknown) => (this.settings.onSettleError ?? logSettleError)(error, this.leaseId),
    );
    return this.#settled;
  }
}

/**
 * Acquires for one model call and waits a reserved `waitMs`; a refusal throws
 * {@link SluiceRefusedError} before the model is called.
 */
export async function admit(
  settings: GuardSettings,
  request: AcquireRequest,
): Promise<GuardedCall> {
  const result = await settings.client.acquire(request);
  if (!result.allowed) throw new SluiceRefusedError(result, request.resource);
  if (result.waitMs > 0) await (settings.sleep ?? realSleep)(result.waitMs);
  return new GuardedCall(result, request, settings);
}

/**
 * The usage of a call cut short after it began answering: the input as estimated, and the output
 * counted from what it streamed. Nothing streamed: undefined (the reservation is given back).
 */
export function usedSoFar(
  estimate: Usage,
  streamed: boolean,
  outputTokens: number,
): Usage | undefined {
  if (!streamed) return undefined;
  return { input_tokens: estimate.input_tokens ?? 0, output_tokens: outputTokens };
}
