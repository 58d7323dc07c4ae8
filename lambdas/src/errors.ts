/**
 * The errors of the handlers themselves: refusals the HTTP edge raises before any handler runs
 * (content type, size, routing), and an environment a function cannot run with. Errors from the
 * engine and the catalog are @sluice/core's; http/problem.ts maps both to responses.
 */

/** Codes of the edge's own refusals. */
export type HttpProblemCode =
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'not_found'
  | 'method_not_allowed';

/** Every code an error of this package carries. */
export type HandlerErrorCode = HttpProblemCode | 'environment_invalid' | 'setup_invalid';

/** Base class of the errors the handlers throw. */
export class HandlerError extends Error {
  constructor(
    readonly code: HandlerErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An HTTP-level refusal with its status. */
export class HttpProblem extends HandlerError {
  declare readonly code: HttpProblemCode;

  constructor(
    readonly status: number,
    code: HttpProblemCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/**
 * A variable the function needs is missing or malformed (a deployment mistake): the request
 * fails with a 500 whose body says nothing, and the log names the variable.
 */
export class EnvironmentError extends HandlerError {
  constructor(message: string) {
    super('environment_invalid', message);
  }
}

/**
 * In process: DynamoDB refused the caller's own setup (its role may not use the table, or there is
 * no such table). Every call would fail the same way, so it is thrown to the caller rather than
 * answered as an outage (which a client failing open would admit through).
 */
export class SetupError extends HandlerError {
  constructor(message: string, options?: ErrorOptions) {
    super('setup_invalid', message, options);
  }
}
