/** Largest request body a handler accepts (a bigger one is 413 `payload_too_large`). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Deepest nesting of a request body (a deeper one is 400 naming where it goes too deep). */
export const MAX_BODY_DEPTH = 16;

/**
 * The header a caller states how long it will wait for the answer with (milliseconds): a
 * decision never outlives it (see `deadlineOf`). `@sluice/client` sends it on every request.
 */
export const TIMEOUT_HEADER = 'x-sluice-timeout-ms';

/**
 * Of the time a request may take (the function's remaining time, or the caller's timeout), the
 * share kept to answer in: a decision stops at 90% of it, and at most 250 ms before the end.
 */
export const DEADLINE_MARGIN = { share: 0.1, maxMs: 250 } as const;

/** What a 503 asks the caller to wait before it tries again. */
export const UNAVAILABLE_RETRY_MS = 1_000;
