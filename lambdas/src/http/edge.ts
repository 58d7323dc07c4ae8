/**
 * The middleware every route uses, written once: JSON body checks (415, 413, 400), problem+json
 * errors, logging context, and, on a decision route, its OpenTelemetry decision metrics.
 */
import type { MiddlewareObj } from '@middy/core';
import { ValidationError } from '@sluice/core';
import { own, PolicyRefusal, validationErrorFrom } from '@sluice/core/internal';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import type * as z from 'zod/mini';
import { HttpProblem } from '../errors.js';
import { logger } from '../runtime.js';
import { decisionAnswered, otelApi } from '../telemetry.js';
import { DEADLINE_MARGIN, MAX_BODY_BYTES, MAX_BODY_DEPTH, TIMEOUT_HEADER } from './limits.js';
import { fromError, type Result } from './problem.js';

/**
 * The event after the edge has parsed its JSON body, with the request's deadline: it aborts
 * when the decision must stop to answer in time.
 */
export type JsonEvent = APIGatewayProxyEventV2 & {
  parsedBody?: unknown;
  deadline?: AbortSignal;
  /** When the edge took the request (`performance.now()`), on a decision route. */
  receivedAt?: number;
  /** The code of a refusal the handler answered (not threw), for the decision metrics. */
  refusalCode?: string;
  /** What the handler threw, answered as a problem: its caller in this process may look. */
  failure?: unknown;
};

/** Per-route settings of {@link edge}. */
export interface EdgeOptions {
  /** Route name in logs and metrics. */
  readonly route: string;
  /** Whether the route takes a JSON body (or which requests do). @default true */
  readonly body?: boolean | ((event: APIGatewayProxyEventV2) => boolean);
  /** Whether its answers are decisions, counted and timed as such (OpenTelemetry). @default false */
  readonly decision?: boolean;
}

/** Validates a parsed body; a bad field becomes a 400 naming it. */
export function parse<T extends z.ZodMiniType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const error = validationErrorFrom(result.error, '');
    // The body itself is the wrong type (an array, a string): name it.
    throw error.field === ''
      ? new ValidationError('body', error.message.replace(/^: /, ''))
      : error;
  }
  return result.data;
}

/**
 * Where a parsed body has a `__proto__` key (an own property after `JSON.parse`), if it has one:
 * schemas pass over such a key without a word, so it is refused here, naming its place.
 */
function protoKeyIn(body: unknown): string | undefined {
  // Walked with a list, not recursion: a body nested thousands deep is valid JSON, and is
  // refused for its depth (no request of the API nests more than a few levels).
  const pending: { value: unknown; path: string; depth: number }[] = [
    { value: body, path: '', depth: 0 },
  ];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value, path, depth } = next;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_BODY_DEPTH)
      throw new ValidationError(path, `nested more than ${MAX_BODY_DEPTH} levels deep`);
    for (const [key, inner] of Object.entries(value)) {
      const at = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
      if (key === '__proto__') return at;
      pending.push({ value: inner, path: at, depth: depth + 1 });
    }
  }
  return undefined;
}

/**
 * Who calls: the IAM principal ARN API Gateway's IAM authorizer reports (an assumed role's
 * session ARN, a user's ARN); none without IAM authorization.
 */
export const principalOf = (event: APIGatewayProxyEventV2): string | undefined =>
  (event.requestContext as { authorizer?: { iam?: { userArn?: string } } } | undefined)?.authorizer
    ?.iam?.userArn;

/** A request header's value, by its name in any case. */
export function header(event: APIGatewayProxyEventV2, name: string): string | undefined {
  return own(event.headers, name) ?? own(event.headers, name.toLowerCase());
}

/**
 * When the request must be answered: the function's remaining time, or the caller's own timeout
 * (the {@link TIMEOUT_HEADER}) when sooner, less a margin to answer in. Past it, the operation
 * stops writing and answers 503: work never outlives the caller's wait (a lease answered after
 * the caller gave up would stay charged).
 */
export function deadlineOf(
  event: APIGatewayProxyEventV2,
  context: Context,
): AbortSignal | undefined {
  const remaining = context.getRemainingTimeInMillis?.();
  const stated = Number(header(event, TIMEOUT_HEADER));
  const asked = Number.isFinite(stated) && stated > 0 ? stated : Number.POSITIVE_INFINITY;
  const budget = Math.min(remaining ?? Number.POSITIVE_INFINITY, asked);
  if (!Number.isFinite(budget)) return undefined;
  const margin = Math.min(DEADLINE_MARGIN.maxMs, budget * DEADLINE_MARGIN.share);
  return AbortSignal.timeout(Math.max(0, Math.floor(budget - margin)));
}

/**
 * The edge middleware: body checks before, problem+json on error, log context always. (In
 * CloudWatch, latency is API Gateway's and Lambda's own metric: measuring it here with a library
 * loaded at import cost the hot path. On a decision route the edge times the answer for
 * OpenTelemetry, whose API it starts loading in the background, when it is installed.)
 */
export function edge(options: EdgeOptions): MiddlewareObj<JsonEvent, Result, Error, Context> {
  const opts = { body: true, ...options };
  // In the background, as the handler's module loads: loaded by the first decision's answer.
  if (opts.decision) void otelApi();
  return {
    before: async (request) => {
      logger.appendKeys({ route: opts.route, requestId: request.event.requestContext?.requestId });
      const event = request.event;
      if (opts.decision) event.receivedAt = performance.now();
      const deadline = deadlineOf(event, request.context);
      if (deadline) event.deadline = deadline;
      if (typeof opts.body === 'function' ? !opts.body(event) : !opts.body) return;
      const type = header(event, 'content-type') ?? '';
      if (!/^application\/([a-z.+-]+\+)?json\s*(;|$)/i.test(type)) {
        throw new HttpProblem(415, 'unsupported_media_type', 'send the body as application/json');
      }
      const raw = event.isBase64Encoded
        ? Buffer.from(event.body ?? '', 'base64').toString('utf8')
        : (event.body ?? '');
      if (Buffer.byteLength(raw) > MAX_BODY_BYTES) {
        throw new HttpProblem(
          413,
          'payload_too_large',
          `the body may be at most ${MAX_BODY_BYTES} bytes`,
        );
      }
      try {
        event.parsedBody = JSON.parse(raw);
      } catch {
        throw new ValidationError('body', 'not valid JSON');
      }
      const hidden = protoKeyIn(event.parsedBody);
      if (hidden !== undefined) throw new ValidationError(hidden, 'is not a name Sluice accepts');
    },
    after: async ({ event, response }) => {
      // Awaited: only while the API is still loading (the first decisions of a process) does
      // it wait, so that a decision is recorded within its invocation (before its flush).
      if (event.receivedAt !== undefined && response)
        await decisionAnswered(
          event.parsedBody,
          response.statusCode ?? 200,
          event.refusalCode,
          event.receivedAt,
        );
      logger.resetKeys();
    },
    onError: async (request) => {
      const { error } = request;
      request.event.failure = error;
      const { response, expected } = fromError(error);
      if (error instanceof PolicyRefusal && error.code === 'configuration_invalid')
        logger.warn('stored configuration is inconsistent', { detail: error.message });
      else if (expected) logger.info('refused', { status: response.statusCode });
      else logger.error('failed', { error });
      request.response = response;
      const { event } = request;
      if (event.receivedAt !== undefined) {
        const code = (error as { code?: unknown } | undefined)?.code;
        const known = typeof code === 'string' ? code : undefined;
        await decisionAnswered(
          event.parsedBody,
          response.statusCode ?? 500,
          known,
          event.receivedAt,
        );
      }
      logger.resetKeys();
    },
  };
}
