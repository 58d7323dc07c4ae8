/**
 * Errors thrown by @sluice/core. Expected outcomes (a denial, a wait) are values, never errors:
 * these are for misuse (bad input, an unknown lease) and broken infrastructure.
 */

/** Why stored configuration refuses a request (not a rate limit). */
export type RefusalCode =
  | 'resource_not_allowed'
  | 'context_too_large'
  | 'entity_disabled'
  | 'unknown_entity'
  | 'caller_not_allowed'
  | 'price_unknown'
  | 'configuration_invalid';

/** Stable machine-readable codes; the HTTP edge maps each to one status. */
export type SluiceErrorCode =
  | 'invalid_request'
  | 'lease_not_found'
  | 'lease_settled'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'unavailable'
  | 'internal'
  | RefusalCode;

/** Base class of every error @sluice/core throws. */
export class SluiceError extends Error {
  readonly code: SluiceErrorCode;

  constructor(code: SluiceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Input that can never be accepted; `field` names the offending field, e.g. `limits[0].burst`. */
export class ValidationError extends SluiceError {
  readonly field: string;

  constructor(field: string, message: string, options?: ErrorOptions) {
    super('invalid_request', `${field}: ${message}`, options);
    this.field = field;
  }
}

/** The lease id is unknown, expired, or was altered. */
export class LeaseNotFoundError extends SluiceError {
  constructor(message = 'lease not found, expired or altered') {
    super('lease_not_found', message);
  }
}

/** The lease was already settled by a different release; it cannot change any more. */
export class LeaseSettledError extends SluiceError {
  constructor(message = 'lease already settled') {
    super('lease_settled', message);
  }
}

/** The store could not be reached or refused the request (throttling, network, credentials). */
export class StoreUnavailableError extends SluiceError {
  /**
   * True when the store refused the request without applying it (throttling): it may be sent
   * again. Otherwise (a server error, a lost answer) it may or may not have been applied.
   */
  readonly notApplied: boolean;

  constructor(message: string, options?: ErrorOptions & { readonly notApplied?: boolean }) {
    super('unavailable', message, options);
    this.notApplied = options?.notApplied ?? false;
  }
}

/**
 * The request's deadline passed before the decision was made: nothing more is written for it, and
 * what it had already taken is given back (acquire). Retry.
 */
export class DeadlineExceededError extends StoreUnavailableError {
  constructor(message = "the request's deadline passed before the store answered; retry") {
    super(message);
  }
}

/**
 * A write whose answer was lost (a dropped connection, a server error): it may or may not have
 * been applied. `writeId` is the id the write tagged its item with, so that the item can later
 * say whether it was (see engine/tagged-writes.ts).
 */
export class WriteOutcomeUnknownError extends StoreUnavailableError {
  constructor(
    readonly writeId: string,
    options: ErrorOptions,
  ) {
    super('a write to the store ended without an answer; retry', options);
  }
}

/**
 * DynamoDB refused writes of a transaction for what they hold (an item grown past 400 KB): sent
 * again they are refused again. `items` are the positions of those writes in the transaction.
 */
export class WriteRejectedError extends SluiceError {
  constructor(
    readonly items: readonly number[],
    options: ErrorOptions,
  ) {
    super('internal', 'DynamoDB rejected a write: ValidationError', options);
  }
}

/** Something the request names does not exist. */
export class NotFoundError extends SluiceError {
  constructor(message: string) {
    super('not_found', message);
  }
}

/** The write conflicts with stored state (in use, or changed concurrently). */
export class ConflictError extends SluiceError {
  constructor(message: string) {
    super('conflict', message);
  }
}

/**
 * A write made on a condition (the version its writer last read, or that nothing is stored yet)
 * that the stored document no longer meets: nothing was written. `current` is the version stored
 * now (0: none).
 */
export class PreconditionFailedError extends SluiceError {
  constructor(
    message: string,
    readonly current: number,
  ) {
    super('precondition_failed', message);
  }
}

/** A refusal that stored configuration decides (not a rate limit); `code` says which. */
export class PolicyRefusal extends SluiceError {
  declare readonly code: RefusalCode;

  constructor(code: RefusalCode, message: string) {
    super(code, message);
  }
}
