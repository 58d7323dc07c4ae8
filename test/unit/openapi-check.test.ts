/**
 * The e2e tier's check of answers against docs/openapi.json (test/support/openapi.ts): it passes
 * what the document describes and names what it does not.
 */
import { describe, expect, it } from 'vitest';
import { mismatchOf } from '../support/openapi.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const PROBLEM_TYPE = { 'content-type': 'application/problem+json' };
const problem = (status: number, code: string, extras: object = {}) =>
  JSON.stringify({
    type: `urn:sluice:problem:${code}`,
    title: 'Error',
    status,
    code,
    detail: 'why',
    ...extras,
  });
const admitted = {
  allowed: true,
  lease_id: 'L1',
  wait_ms: 0,
  limits: [
    { scope: 'entity', name: 'rpm', metric: 'requests', limit: 10, remaining: 9, reset_ms: 6_000 },
  ],
};

describe('the check of answers against docs/openapi.json', () => {
  it('passes an answer as described, matching a concrete path to its template', () => {
    const answers = [
      {
        method: 'POST',
        url: 'http://127.0.0.1:3000/v1/acquire',
        status: 200,
        headers: JSON_TYPE,
        text: JSON.stringify({ ...admitted, resource: 'm', fell_back: false }),
      },
      {
        method: 'PUT',
        url: '/v1/admin/plans/free',
        status: 201,
        headers: { ...JSON_TYPE, etag: '"1"' },
        text: JSON.stringify({ kind: 'plan', name: 'free', config: {}, version: 1, changed: true }),
      },
      { method: 'DELETE', url: '/v1/admin/plans/free', status: 204, text: '' },
      {
        method: 'GET',
        url: '/v1/nowhere',
        status: 404,
        headers: PROBLEM_TYPE,
        text: problem(404, 'not_found'),
      },
      {
        method: 'DELETE',
        url: '/v1/acquire',
        status: 405,
        headers: PROBLEM_TYPE,
        text: problem(405, 'method_not_allowed'),
      },
      {
        method: 'GET',
        url: '/v1/health',
        status: 503,
        headers: { ...PROBLEM_TYPE, 'retry-after': '1', 'retry-after-ms': '1000' },
        text: problem(503, 'unavailable', { retry_after_ms: 1_000 }),
      },
    ];

    expect(answers.map(mismatchOf)).toEqual(answers.map(() => undefined));
  });

  it('names the route, the status and the schema error of a body that differs', () => {
    const text = JSON.stringify({ ...admitted, lease_id: undefined, extra: 1 });

    const mismatch = mismatchOf({
      method: 'POST',
      url: '/v1/acquire',
      status: 200,
      headers: JSON_TYPE,
      text,
    });

    expect(mismatch).toMatch(/^POST \/v1\/acquire 200 does not match/);
    expect(mismatch).toContain("must have required property 'lease_id'");
    expect(mismatch).toContain('body must NOT have additional properties (extra)');
  });

  it('refuses a status, a code, a content type, a header or a body the document does not describe', () => {
    const mismatches = [
      {
        method: 'POST',
        url: '/v1/acquire',
        status: 404,
        headers: PROBLEM_TYPE,
        text: problem(404, 'lease_not_found'),
      },
      {
        method: 'POST',
        url: '/v1/acquire',
        status: 429,
        headers: PROBLEM_TYPE,
        text: problem(429, 'slow_down'),
      },
      {
        method: 'POST',
        url: '/v1/acquire',
        status: 200,
        headers: { 'content-type': 'text/html' },
        text: '<html>',
      },
      {
        method: 'GET',
        url: '/v1/health',
        status: 503,
        headers: PROBLEM_TYPE,
        text: problem(503, 'unavailable'),
      },
      { method: 'DELETE', url: '/v1/admin/plans/free', status: 204, text: 'null' },
      { method: 'GET', url: '/v1/nowhere', status: 200, headers: JSON_TYPE, text: '{}' },
    ].map(mismatchOf);

    expect(mismatches[0]).toMatch(
      /POST \/v1\/acquire answered 404, which docs\/openapi.json does not list/,
    );
    expect(mismatches[1]).toContain('must be equal to one of the allowed values');
    expect(mismatches[2]).toContain('content-type text/html, not application/json');
    expect(mismatches[3]).toContain('no Retry-After header');
    expect(mismatches[4]).toContain('describes none');
    expect(mismatches[5]).toContain('it should answer 404, not 200');
  });
});
