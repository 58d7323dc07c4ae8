/**
 * The errors the HTTP edge raises itself, before any handler runs (content type, size, routing).
 * Errors from the engine and the catalog are @sluice/core's; http/problem.ts maps both to
 * responses.
 */

/** Codes of the edge's own refusals. */
export type HttpProblemCode =
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'not_found'
  | 'method_not_allowed';

/** An HTTP-level refusal with its status. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpProblemCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
