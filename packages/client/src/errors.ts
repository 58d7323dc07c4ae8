/**
 * Errors @sluice/client throws: misuse (a request Sluice refused as invalid, an unknown or
 * settled lease) and transport failures the caller asked to see. Denials are values.
 */

/** Base class of every error the SDK throws. */
export class SluiceClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Sluice refused the request itself (400, 404, 409, 413, 415): fix the call. */
export class SluiceRequestError extends SluiceClientError {
  constructor(
    code: string,
    message: string,
    status: number,
    readonly field?: string,
  ) {
    super(code, message, status);
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
