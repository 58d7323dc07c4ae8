/**
 * problem+json (RFC 9457): the one place that maps errors to status codes.
 */
import { SluiceError, type SluiceErrorCode, ValidationError } from '@sluice/core';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { HttpProblem } from '../errors.js';
import { UNAVAILABLE_RETRY_MS } from './limits.js';

/** What a handler returns to API Gateway. */
export type Result = APIGatewayProxyStructuredResultV2;

/**
 * The title of each status Sluice answers with, as RFC 9110 names it. Written out rather than
 * taken from `node:http`'s `STATUS_CODES`: importing that module from an ES module loads all of
 * its lazy exports, undici among them, on every cold start (see the benchmark's cold start).
 */
export const TITLES: Readonly<Record<number, string | undefined>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A JSON answer. */
export function json(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): Result {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  };
}

/** A problem+json answer with a stable `code`; `extras` become members of the body. */
export function problem(
  status: number,
  code: string,
  detail: string,
  extras: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Result {
  return {
    statusCode: status,
    headers: { 'content-type': 'application/problem+json', ...headers },
    body: JSON.stringify({
      type: `urn:sluice:problem:${code}`,
      title: TITLES[status] ?? 'Error',
      status,
      code,
      detail,
      ...extras,
    }),
  };
}

/** The status of each error code of @sluice/core: a code without one does not compile. */
export const STATUS_OF: Record<SluiceErrorCode, number> = {
  invalid_request: 400,
  lease_not_found: 404,
  lease_settled: 409,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  unavailable: 503,
  internal: 500,
  // Refusals by stored configuration: 403 for who may call what, 422 for what the call asks.
  resource_not_allowed: 403,
  entity_disabled: 403,
  unknown_entity: 403,
  caller_not_allowed: 403,
  context_too_large: 422,
  price_unknown: 422,
  // Stored configuration that does not fit together: refused (never admitted, never a 5xx that
  // a fail-open client would turn into unlimited access) until an admin mends it.
  configuration_invalid: 409,
};

/** Turns any thrown error into a response; only 4xx messages reach the caller. */
export function fromError(error: unknown): { response: Result; expected: boolean } {
  if (error instanceof HttpProblem) {
    return { response: problem(error.status, error.code, error.message), expected: true };
  }
  if (error instanceof ValidationError) {
    return {
      response: problem(400, error.code, error.message, { field: error.field }),
      expected: true,
    };
  }
  if (error instanceof SluiceError && error.code !== 'internal') {
    const status = STATUS_OF[error.code];
    if (status === 503) return { response: unavailable(), expected: false };
    return { response: problem(status, error.code, error.message), expected: true };
  }
  // The function's own time ran out (middy's early timeout): as unavailable, never a 500.
  if (error instanceof Error && error.name === 'TimeoutError')
    return { response: unavailable(), expected: false };
  return { response: problem(500, 'internal', 'internal error'), expected: false };
}

/** The answer when the store is slow or unreachable: retry after a second. */
function unavailable(): Result {
  return problem(
    503,
    'unavailable',
    'the limiter store cannot be reached; retry',
    { retry_after_ms: UNAVAILABLE_RETRY_MS },
    {
      'retry-after': String(Math.ceil(UNAVAILABLE_RETRY_MS / 1_000)),
      'retry-after-ms': String(UNAVAILABLE_RETRY_MS),
    },
  );
}
