/**
 * What the framework integrations (`@sluice/client/ai-sdk`, `@sluice/client/langchain`) share:
 * the refusal as an error a caller can answer with, the acquire before a model call, and a
 * lease that settles exactly once whatever ends the call (its result, an error, an abort, the
 * consumer walking away) and in whatever order those arrive.
 */
import { sleepUnlessAborted, untilAborted } from './abort.js';
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

function logSettleError(error: unknown, leaseId: string): void {
  const { code, message } = error as { code?: string; message?: string };
  console.error(
    `sluice: settling lease ${leaseId.slice(0, 12)}… failed: ${code ?? ''} ${message ?? error}`,
  );
}

/**
 * The settles an integration has sent and not yet seen answered: a function about to return (a
 * Lambda's handler, whose process may be frozen after it) waits for {@link Settlements.idle}.
 */
export class Settlements {
  readonly #pending = new Set<Promise<void>>();

  track(settle: Promise<void>): Promise<void> {
    this.#pending.add(settle);
    void settle.finally(() => this.#pending.delete(settle));
    return settle;
  }

  /** Resolves when every settle sent so far has been answered (or has failed). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}

/**
 * A lease on one model call. {@link GuardedCall.settle} releases it once: the first call decides
 * (with usage, the totals; without, the reservation given back) and every later one returns the
 * same promise. It never rejects: a failed settle goes to `onSettleError`, and so does one that
 * could not reach Sluice (the client then answers it as degraded rather than throwing).
 */
export class GuardedCall {
  #settled: Promise<void> | undefined;

  constructor(
    readonly admission: Admission,
    readonly request: AcquireRequest,
    private readonly settings: GuardSettings,
    private readonly settlements: Settlements,
  ) {}

  get leaseId(): string {
    return this.admission.leaseId;
  }

  /** True once a settle has begun. */
  get settled(): boolean {
    return this.#settled !== undefined;
  }

  settle(usage?: Usage): Promise<void> {
    const failed = (error: unknown) =>
      (this.settings.onSettleError ?? logSettleError)(error, this.leaseId);
    this.#settled ??= this.settlements.track(
      this.settings.client.release(this.leaseId, usage).then((result) => {
        // A lease handed out while Sluice was unreachable has nothing to settle; any other
        // answered as degraded was not settled: Sluice could not be reached.
        if (result.degraded && !this.admission.degraded)
          failed(new SluiceClientError('unavailable', 'Sluice could not be reached to settle'));
      }, failed),
    );
    return this.#settled;
  }
}

/**
 * Acquires for one model call and waits a reserved `waitMs`; a refusal throws
 * {@link SluiceRefusedError} before the model is called. An abort of `signal` while the acquire
 * is answered or the wait is waited ends it at once with the signal's reason: the model is not
 * called, and what was (or is still to be) admitted is given back.
 */
export async function admit(
  settings: GuardSettings,
  settlements: Settlements,
  request: AcquireRequest,
  signal?: AbortSignal,
): Promise<GuardedCall> {
  const acquiring = settings.client.acquire(request);
  let result: AcquireResult;
  try {
    result = await untilAborted(acquiring, signal);
  } catch (error) {
    if (signal?.aborted) {
      // Nobody waits for this answer any more: an admission is given back as it arrives.
      const giveBack = (late: AcquireResult) =>
        late.allowed ? new GuardedCall(late, request, settings, settlements).settle() : undefined;
      settlements.track(acquiring.then(giveBack).then(ignore, ignore));
    }
    throw error;
  }
  if (!result.allowed) throw new SluiceRefusedError(result, request.resource);
  const guarded = new GuardedCall(result, request, settings, settlements);
  try {
    if (result.waitMs > 0)
      await (settings.sleep
        ? untilAborted(settings.sleep(result.waitMs), signal)
        : sleepUnlessAborted(result.waitMs, signal));
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
  } catch (error) {
    // Aborted while it was being admitted: the model is not called, and nothing was used.
    await guarded.settle();
    throw error;
  }
  return guarded;
}

const ignore = () => {};

/** A count a provider reported: a whole number, not negative (anything else is no count). */
export const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * The refusal behind `error`, wherever a framework put it: the error itself, or an error that
 * wraps it (the AI SDK's retries wrap the last attempt's error in a RetryError: `lastError`,
 * `errors`; others use `cause`).
 */
export function refusalOf(error: unknown): SluiceRefusedError | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const next = queue.shift();
    if (next instanceof SluiceRefusedError) return next;
    if (typeof next !== 'object' || next === null || seen.has(next)) continue;
    seen.add(next);
    const { lastError, errors, cause } = next as Record<string, unknown>;
    queue.push(lastError, cause, ...(Array.isArray(errors) ? errors : []));
  }
  return undefined;
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
