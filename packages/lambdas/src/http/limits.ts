/** Largest request body a handler accepts (a bigger one is 413 `payload_too_large`). */
export const MAX_BODY_BYTES = 64 * 1024;
