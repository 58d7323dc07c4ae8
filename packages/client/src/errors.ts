/**
 * Errors @sluice/client throws: misuse (a request Sluice refused as invalid, an unknown or
 * settled lease) and transport failures the caller asked to see. Denials are values.
 */
import { problemFrom } from './wire.js';

/**
 * Every code Sluice's problem+json answers carry, each with its status: 400 `invalid_request`;
 * 403 `resource_not_allowed`, `entity_disabled`, `unknown_entity`, `caller_not_allowed`; 404
 * `lease_not_found`, `not_found`; 405 `method_not_allowed`; 409 `lease_settled`, `conflict`,
 * `configuration_invalid`; 412 `precondition_failed`; 413 `payload_too_large`; 415 `unsupported_media_type`; 422
 * `exceeds_capacity`, `context_too_large`, `price_unknown`; 429 `rate_limited`; 500 `internal`;
 * 503 `unavailable`. (The SDK checks this list against the server's own schemas as it is built.)
 */
export type SluiceProblemCode =
  | 'invalid_request'
  | 'resource_not_allowed'
  | 'entity_disabled'
  | 'unknown_entity'
  | 'caller_not_allowed'
  | 'lease_not_found'
  | 'not_found'
  | 'method_not_allowed'
  | 'lease_settled'
  | 'conflict'
  | 'precondition_failed'
  | 'configuration_invalid'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'exceeds_capacity'
  | 'context_too_large'
  | 'price_unknown'
  | 'rate_limited'
  | 'internal'
  | 'unavailable';

/**
 * The codes an error may carry: Sluice's problem codes as it sent them ({@link SluiceProblemCode};
 * `unavailable` also when it was not reached), `forbidden` (a 403 from API Gateway, e.g. a missing
 * IAM grant; `caller_not_allowed` is Sluice's own, when an entity's `callers` do not name this
 * principal) or `http_<status>` for another answer without a code. Open-ended: a newer Sluice may
 * answer a code this SDK does not know.
 */
export type SluiceClientErrorCode =
  | SluiceProblemCode
  | 'forbidden'
  | `http_${number}`
  | (string & {});

/** Base class of every error the SDK throws. */
export class SluiceClientError extends Error {
  constructor(
    readonly code: SluiceClientErrorCode,
    message: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Sluice refused the request itself (400, 403, 404, 405, 409, 413, 415, and a 422 of a route other
 * than acquire): fix the call, the grant or the configuration. `code`, `status` and `field` are as
 * Sluice sent them.
 */
export class SluiceRequestError extends SluiceClientError {
  constructor(
    code: SluiceClientErrorCode,
    message: string,
    status: number,
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(code, message, status, options);
  }
}

/**
 * The error for a refusal Sluice answered: its problem+json `code`, `detail` and `field`, or
 * (an API Gateway refusal such as a missing IAM grant has no `code`) one made from the status.
 */
export function requestErrorFrom(status: number, body: unknown): SluiceRequestError {
  const problem = problemFrom(body);
  return new SluiceRequestError(
    problem.code ?? (status === 403 ? 'forbidden' : `http_${status}`),
    problem.detail ?? `Sluice answered ${status}`,
    status,
    problem.field,
  );
}
