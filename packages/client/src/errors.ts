/**
 * Errors @sluice/client throws: misuse (a request Sluice refused as invalid, an unknown or
 * settled lease) and transport failures the caller asked to see. Denials are values.
 */

/**
 * The codes an error may carry: Sluice's problem codes, `unavailable` (not reached),
 * `forbidden` (a 403 from API Gateway, e.g. a missing IAM grant; `caller_not_allowed` is Sluice's
 * own, when an entity's `callers` do not name this principal) or `http_<status>` for an
 * answer without a code. Open-ended: a newer Sluice may answer a code this SDK does not know.
 */
export type SluiceClientErrorCode =
  | 'invalid_request'
  | 'lease_not_found'
  | 'lease_settled'
  | 'not_found'
  | 'conflict'
  | 'configuration_invalid'
  | 'caller_not_allowed'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  | 'forbidden'
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

/** Sluice refused the request itself (400, 403, 404, 409, 413, 415): fix the call or the grant. */
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
  const problem = (body ?? {}) as {
    code?: string;
    detail?: string;
    field?: string;
    message?: string;
  };
  return new SluiceRequestError(
    problem.code ?? (status === 403 ? 'forbidden' : `http_${status}`),
    problem.detail ?? problem.message ?? `Sluice answered ${status}`,
    status,
    problem.field,
  );
}
