/**
 * Small HTTP helpers for the admin routes, as a black-box client would call them (through
 * api.ts `request`: every answer is checked against docs/openapi.json).
 */
import { request } from './api.js';

/** PUTs a document and fails the test unless it was stored. */
export async function put(base: string, path: string, body: unknown): Promise<void> {
  const res = await request('PUT', `${base}/v1/admin/${path}`, body);
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`PUT ${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
}

/** POST /v1/acquire. */
export function acquire(base: string, body: Record<string, unknown>) {
  return request('POST', `${base}/v1/acquire`, body);
}

/**
 * An acquire as a client makes it: a 503 (many concurrent writers on one item can outlast an
 * acquire's attempts; it gave back what it took) is sent again after a jittered wait, as the SDK
 * does. Concurrency tests that count admissions and refusals use it: a 503 is neither.
 */
export async function acquireAsClient(base: string, body: Record<string, unknown>, tries = 6) {
  for (let attempt = 1; ; attempt++) {
    const answer = await acquire(base, body);
    if (answer.status !== 503 || attempt === tries) return answer;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * 2 ** attempt));
  }
}

/** A limit's entry in an answer's `limits`. */
export function limitOf(
  body: Record<string, unknown>,
  scope: string,
  name: string,
): { remaining: number; limit: number; reset_ms: number } | undefined {
  const limits = (body.limits ?? []) as {
    scope: string;
    name: string;
    remaining: number;
    limit: number;
    reset_ms: number;
  }[];
  return limits.find((l) => l.scope === scope && l.name === name);
}
