/**
 * The middleware every route uses, written once: JSON body checks (415, 413, 400), problem+json
 * errors, logging context, and a latency metric.
 */
import type { MiddlewareObj } from '@middy/core';
import { PolicyRefusal, ValidationError, validationErrorFrom } from '@sluice/core';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import type * as z from 'zod/mini';
import { HttpProblem } from '../errors.js';
import { logger } from '../runtime.js';
import { MAX_BODY_BYTES } from './limits.js';
import { fromError, type Result } from './problem.js';

/** The event after the edge has parsed its JSON body. */
export type JsonEvent = APIGatewayProxyEventV2 & { parsedBody?: unknown };

/** Per-route settings of {@link edge}. */
export interface EdgeOptions {
  /** Route name in logs and metrics. */
  readonly route: string;
  /** Whether the route takes a JSON body (or which requests do). @default true */
  readonly body?: boolean | ((event: APIGatewayProxyEventV2) => boolean);
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
 * Who calls: the IAM principal ARN API Gateway's IAM authorizer reports (an assumed role's
 * session ARN, a user's ARN); none without IAM authorization.
 */
export const principalOf = (event: APIGatewayProxyEventV2): string | undefined =>
  (event.requestContext as { authorizer?: { iam?: { userArn?: string } } } | undefined)?.authorizer
    ?.iam?.userArn;

function header(event: APIGatewayProxyEventV2, name: string): string | undefined {
  return event.headers?.[name] ?? event.headers?.[name.toLowerCase()];
}

/**
 * The edge middleware: body checks before, problem+json on error, log context always. (Latency is
 * API Gateway's and Lambda's own metric: measuring it here again cost the hot path a library.)
 */
export function edge(options: EdgeOptions): MiddlewareObj<JsonEvent, Result, Error, Context> {
  const opts = { body: true, ...options };
  return {
    before: async (request) => {
      logger.appendKeys({ route: opts.route, requestId: request.event.requestContext?.requestId });
      const event = request.event;
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
    },
    after: async () => {
      logger.resetKeys();
    },
    onError: async (request) => {
      const { error } = request;
      const { response, expected } = fromError(error);
      if (error instanceof PolicyRefusal && error.code === 'configuration_invalid')
        logger.warn('stored configuration is inconsistent', { detail: error.message });
      else if (expected) logger.info('refused', { status: response.statusCode });
      else logger.error('failed', { error });
      request.response = response;
      logger.resetKeys();
    },
  };
}
