/**
 * Every code Sluice answers reaches the SDK's caller as Sluice sent it. A server on a real socket
 * answers each code exactly as the HTTP edge does (the edge's own functions build each answer:
 * `fromError` for the codes of @sluice/core, `problem` for the edge's own and for acquire's
 * refusals), and each goes through `acquire` (a refusal value, a degraded refusal when failing
 * closed, or a thrown `SluiceRequestError`), the admin and the middy middleware.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AcquireResult, SluiceAdmin, SluiceClient, SluiceRequestError } from '@sluice/client';
import { refusalResponse } from '@sluice/client/middy';
import { SluiceError, type SluiceErrorCode, ValidationError } from '@sluice/core';
import { fromError, problem, type Result, STATUS_OF } from '@sluice/lambdas/problem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The edge's own refusals (lambdas/src/http/edge.ts, the local server's router). */
const EDGE_CODES = {
  unsupported_media_type: 415,
  payload_too_large: 413,
  not_found: 404,
  method_not_allowed: 405,
} as const;

/** Acquire's refusals (lambdas/src/acquire.ts). */
const REFUSAL_CODES = { rate_limited: 429, exceeds_capacity: 422 } as const;

const VIOLATION = {
  scope: 'entity',
  name: 'tpm',
  metric: 'tokens',
  limit: 1_000,
  remaining: 10,
  requested: 100,
  retry_after_ms: 1_500,
  resource: 'gpt-4o',
};

/** The answer the edge gives for `code`, built by the edge's own functions. */
function answerOf(code: string): Result {
  if (code === 'rate_limited' || code === 'exceeds_capacity') {
    const retryAfterMs = code === 'rate_limited' ? 1_500 : null;
    return problem(
      REFUSAL_CODES[code],
      code,
      'refused',
      {
        retry_after_ms: retryAfterMs,
        violations: [{ ...VIOLATION, retry_after_ms: retryAfterMs }],
      },
      code === 'rate_limited' ? { 'retry-after': '2', 'retry-after-ms': '1500' } : {},
    );
  }
  if (Object.hasOwn(EDGE_CODES, code) && !Object.hasOwn(STATUS_OF, code))
    return problem(EDGE_CODES[code as keyof typeof EDGE_CODES], code, `refused: ${code}`);
  if (code === 'invalid_request')
    return fromError(new ValidationError('usage.tokens', 'must be at most 10')).response;
  if (code === 'internal') return fromError(new Error('a bug')).response;
  return fromError(new SluiceError(code as SluiceErrorCode, `refused: ${code}`)).response;
}

/** Every code, with its status: @sluice/core's (STATUS_OF), the edge's, acquire's refusals. */
const TABLE = Object.entries({ ...STATUS_OF, ...EDGE_CODES, ...REFUSAL_CODES }).map(
  ([code, status]) => ({ code, status, answer: answerOf(code) }),
);

/** What acquire makes of each status: a refusal value, a degraded refusal (failing closed), or a throw. */
const ACQUIRE_OUTCOME: Readonly<Record<number, 'refusal' | 'degraded' | 'thrown'>> = {
  400: 'thrown',
  403: 'thrown',
  404: 'thrown',
  405: 'thrown',
  409: 'thrown',
  412: 'thrown',
  413: 'thrown',
  415: 'thrown',
  422: 'refusal',
  429: 'refusal',
  500: 'degraded',
  503: 'degraded',
};

/** What the middy middleware answers its own caller for each refusal status. */
const GUARDED_STATUS: Readonly<Record<number, number>> = { 422: 422, 429: 429, 500: 503, 503: 503 };

let server: Server;
let url: string;
beforeAll(async () => {
  // Answers the code the request names: acquire's `entity`, a settle's `lease_id`, a path's end.
  server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.on('end', () => {
      const body = text ? (JSON.parse(text) as { entity?: string; lease_id?: string }) : {};
      const named =
        body.entity ?? body.lease_id ?? decodeURIComponent(req.url?.split('/').at(-1) ?? '');
      const answer = TABLE.find((row) => row.code === named)?.answer;
      if (!answer) {
        res.writeHead(500).end();
        return;
      }
      const payload = String(answer.body);
      res.writeHead(answer.statusCode ?? 500, {
        ...(answer.headers as Record<string, string>),
        'content-length': Buffer.byteLength(payload),
      });
      res.end(payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const noSleep = async () => {};
const client = () =>
  new SluiceClient({ endpoint: url, onUnavailable: 'deny', retries: 0, sleep: noSleep });
const asked = (code: string) => ({ entity: code, resource: 'gpt-4o', usage: { tokens: 100 } });
const sent = (row: (typeof TABLE)[number]) => JSON.parse(String(row.answer.body));

describe('the table of codes', () => {
  it('has an outcome for every status a code is answered with', () => {
    const statuses = [...new Set(TABLE.map((row) => row.status))].sort();

    const missing = statuses.filter((status) => !Object.hasOwn(ACQUIRE_OUTCOME, status));

    expect(missing).toEqual([]);
    expect(TABLE.map((row) => row.code)).toContain('context_too_large');
    expect(TABLE.map((row) => row.code)).toContain('method_not_allowed');
  });
});

describe('every code through acquire', () => {
  it.each(TABLE)('$code ($status) reaches the caller as sent', async (row) => {
    const outcome = ACQUIRE_OUTCOME[row.status];

    const result: AcquireResult | unknown = await client()
      .acquire(asked(row.code))
      .catch((error: unknown) => error);

    if (outcome === 'thrown') {
      expect(result).toBeInstanceOf(SluiceRequestError);
      expect(result).toMatchObject({
        code: row.code,
        status: row.status,
        field: sent(row).field,
        message: sent(row).detail,
      });
    } else {
      expect(result).toMatchObject({
        allowed: false,
        code: row.code,
        retryAfterMs: sent(row).retry_after_ms ?? null,
        degraded: outcome === 'degraded',
      });
    }
  });

  it('keeps what a refusal says: its violations, their resource, its headers', async () => {
    const result = await client().acquire(asked('rate_limited'));

    expect(result).toMatchObject({
      allowed: false,
      violations: [{ name: 'tpm', retryAfterMs: 1_500, resource: 'gpt-4o' }],
      headers: { 'retry-after': '2', 'retry-after-ms': '1500' },
    });
  });
});

describe('every code through the admin and a settle', () => {
  it.each(TABLE)('$code ($status) is thrown as sent', async (row) => {
    const admin = new SluiceAdmin({ endpoint: url });

    const thrown = await admin.get('plan', row.code).catch((error: unknown) => error);

    // A 404 is the admin's "none": get answers undefined for it, whatever its code.
    if (row.status === 404) expect(thrown).toBeUndefined();
    else
      expect(thrown).toMatchObject({ code: row.code, status: row.status, field: sent(row).field });
  });

  it.each(TABLE.filter((row) => row.status < 500))(
    '$code ($status) is thrown by adjust as sent',
    async (row) => {
      const thrown = await client()
        .adjust(row.code, { tokens: 1 })
        .catch((error: unknown) => error);

      expect(thrown).toBeInstanceOf(SluiceRequestError);
      expect(thrown).toMatchObject({ code: row.code, status: row.status });
    },
  );
});

describe('every refusal through the middy middleware', () => {
  it.each(TABLE.filter((row) => Object.hasOwn(GUARDED_STATUS, row.status)))(
    '$code ($status) answers the guarded caller with its code, at the status for it',
    async (row) => {
      const refusal = await client().acquire(asked(row.code));
      if (refusal.allowed) throw new Error('admitted');

      const response = refusalResponse(refusal);

      expect(response.statusCode).toBe(GUARDED_STATUS[row.status]);
      expect(JSON.parse(response.body)).toMatchObject({
        code: row.code,
        status: response.statusCode,
      });
    },
  );
});
