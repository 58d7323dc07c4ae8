/**
 * `@sluice/client/middy`: a middy middleware that guards a Lambda handler with Sluice.
 *
 * Before the handler it acquires; a refusal answers your caller 429 (`rate_limited`), 422 (a
 * request that never fits as asked: `exceeds_capacity`, `context_too_large`, `price_unknown`) or
 * 503 (Sluice unreachable or failing, and the client fails closed), with Sluice's `code` and its
 * `Retry-After` and rate-limit headers, and the handler does not run. After the handler it
 * releases the lease with the usage the handler reported, or with the estimate when it reported
 * none. When the handler throws, the lease is released with what it reported so far (nothing
 * reported: everything is given back). A settle that fails never changes the handler's answer
 * (`onSettleError` hears of it).
 *
 * @example
 * import middy from '@middy/core';
 * import { SluiceClient, fromOpenAI } from '@sluice/client';
 * import { sluiceGuard, type SluiceGuarded } from '@sluice/client/middy';
 *
 * const sluice = new SluiceClient({ endpoint: process.env.SLUICE_URL! });
 * export const handler = middy(async (event: APIGatewayProxyEventV2, context: SluiceGuarded) => {
 *   const completion = await openai.chat.completions.create({ ... });
 *   context.sluice.usage = fromOpenAI(completion.usage);
 *   return { statusCode: 200, body: completion.choices[0].message.content };
 * }).use(sluiceGuard({
 *   client: sluice,
 *   request: (event) => ({ entity: event.headers['x-api-key'] ?? 'anonymous', resource: 'gpt-4o', usage: { input_tokens: 1_000, output_tokens: 500 } }),
 * }));
 */
import type { SluiceClient } from './client.js';
import { SluiceClientError } from './errors.js';
import type { AcquireRequest, AcquireResult, KnownAcquireRefusalCode, Usage } from './types.js';
import { violationsToWire } from './wire.js';

/** What the middleware puts on the handler's context as `sluice`. */
export interface SluiceLease {
  /** The lease's signed token (see {@link AcquireResult}'s `leaseId`). */
  readonly leaseId: string;
  /** What was asked for: the estimate the lease holds. */
  readonly request: AcquireRequest;
  /** The admission: limits, `waitMs`, `degraded`, headers. */
  readonly result: Extract<AcquireResult, { allowed: true }>;
  /** Set this to the call's actual usage (totals); the lease is settled with it. */
  usage?: Usage;
}

/** A handler context the middleware has guarded. */
export interface SluiceGuarded {
  sluice: SluiceLease;
}

/** A refusal as the handler's caller receives it. */
export interface SluiceRefusalResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

export interface SluiceGuardOptions<TEvent, TResult> {
  readonly client: SluiceClient;
  /** What to acquire for this invocation: who calls, which model, the estimate. */
  readonly request: (event: TEvent) => AcquireRequest | Promise<AcquireRequest>;
  /**
   * The actual usage from the handler's response, when the handler does not set
   * `context.sluice.usage`. @default the estimate
   */
  readonly usage?: (response: TResult, event: TEvent) => Usage | undefined;
  /**
   * The response to a refusal. @default a problem+json body with Sluice's `code`, status 429
   * (`rate_limited`), 422 (`exceeds_capacity`, `context_too_large`, `price_unknown`) or 503 (Sluice
   * unreachable or failing, the client failing closed), and Sluice's headers
   */
  readonly refused?: (
    refusal: Extract<AcquireResult, { allowed: false }>,
    event: TEvent,
  ) => TResult | SluiceRefusalResponse;
  /** How the middleware waits a reserved `waitMs` before the handler runs. @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
  /**
   * Called when settling the lease fails (Sluice refused the settle, e.g. the lease was already
   * settled, or could not be reached for it: `unavailable`): the handler's answer stands either
   * way. @default logs the error's code and message
   */
  readonly onSettleError?: (error: unknown, lease: SluiceLease) => void;
}

/** The part of middy's request the middleware uses. */
interface GuardedRequest<TEvent, TResult> {
  event: TEvent;
  context: object;
  response: TResult | null | undefined;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The status a guarded handler answers for each refusal code Sluice sends. */
const STATUS: Readonly<Record<KnownAcquireRefusalCode, number>> = {
  rate_limited: 429,
  exceeds_capacity: 422,
  context_too_large: 422,
  price_unknown: 422,
  unavailable: 503,
  internal: 503, // Sluice failing, the client failing closed: unavailable to this caller too
};

const TITLE: Readonly<Record<number, string>> = {
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/**
 * The status for a refusal: 503 when Sluice could not answer; else by its code. A code this SDK
 * does not know (a newer Sluice's) is a 429 when it says when to retry, else a 422.
 */
function statusOf(refusal: Extract<AcquireResult, { allowed: false }>): number {
  if (refusal.degraded) return 503;
  if (Object.hasOwn(STATUS, refusal.code)) return STATUS[refusal.code as KnownAcquireRefusalCode];
  return refusal.retryAfterMs === null ? 422 : 429;
}

/** The default refusal: problem+json with Sluice's code, its status and Sluice's headers. */
export function refusalResponse(
  refusal: Extract<AcquireResult, { allowed: false }>,
): SluiceRefusalResponse {
  const status = statusOf(refusal);
  const headers: Record<string, string> = {
    'content-type': 'application/problem+json',
    ...refusal.headers,
  };
  if (refusal.retryAfterMs !== null && headers['retry-after'] === undefined)
    headers['retry-after'] = String(Math.ceil(refusal.retryAfterMs / 1000));
  return {
    statusCode: status,
    headers,
    body: JSON.stringify({
      type: 'about:blank',
      title: TITLE[status],
      status,
      code: refusal.code,
      retry_after_ms: refusal.retryAfterMs,
      violations: violationsToWire(refusal.violations),
    }),
  };
}

function logSettleError(error: unknown, lease: SluiceLease): void {
  const { code, message } = error as { code?: string; message?: string };
  console.error(
    `sluice: settling lease ${lease.leaseId.slice(0, 12)}… failed: ${code ?? ''} ${message ?? error}`,
  );
}

const leaseOf = (context: object): SluiceLease | undefined =>
  (context as Partial<SluiceGuarded>).sluice;

/**
 * The middleware: acquire before, settle after, refuse with 429. Whether a Sluice outage lets
 * calls through is the client's `onUnavailable`.
 */
export function sluiceGuard<TEvent, TResult>(options: SluiceGuardOptions<TEvent, TResult>) {
  const sleep = options.sleep ?? realSleep;
  const refused = options.refused ?? refusalResponse;
  const onSettleError = options.onSettleError ?? logSettleError;
  /**
   * Releases `lease`. A settle that fails leaves the handler's answer as it is (the call has
   * happened): `onSettleError` hears of it, and of a release Sluice could not be reached for (the
   * client answers it as degraded), unless the lease itself was handed out while unreachable.
   */
  const settle = async (lease: SluiceLease, usage: Usage | undefined) => {
    try {
      const result = await options.client.release(lease.leaseId, usage);
      if (result.degraded && !lease.result.degraded)
        onSettleError(
          new SluiceClientError('unavailable', 'Sluice could not be reached to settle'),
          lease,
        );
    } catch (error) {
      onSettleError(error, lease);
    }
  };
  return {
    before: async (request: GuardedRequest<TEvent, TResult>): Promise<TResult | undefined> => {
      Reflect.deleteProperty(request.context, 'sluice');
      const asked = await options.request(request.event);
      const result = await options.client.acquire(asked);
      if (!result.allowed) {
        const response = refused(result, request.event) as TResult;
        request.response = response;
        return response; // middy: a value returned from `before` ends the request here
      }
      if (result.waitMs > 0) await sleep(result.waitMs);
      const lease: SluiceLease = { leaseId: result.leaseId, request: asked, result };
      Object.assign(request.context, { sluice: lease });
      return undefined;
    },
    after: async (request: GuardedRequest<TEvent, TResult>): Promise<void> => {
      const lease = leaseOf(request.context);
      if (!lease) return;
      const usage =
        lease.usage ??
        (options.usage && request.response !== null && request.response !== undefined
          ? options.usage(request.response, request.event)
          : undefined) ??
        lease.request.usage;
      await settle(lease, usage);
    },
    onError: async (request: GuardedRequest<TEvent, TResult>): Promise<void> => {
      const lease = leaseOf(request.context);
      if (!lease) return;
      // The call failed: charge what it reported using, or give the reservation back.
      await settle(lease, lease.usage);
    },
  };
}
