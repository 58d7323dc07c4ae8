import { STATUS_CODES } from 'node:http';
import { problem, STATUS_OF, TITLES } from '@sluice/lambdas/problem';
import { describe, expect, it } from 'vitest';

describe("problem+json's titles", () => {
  it('name every status an error code maps to, and those the edge answers with itself', () => {
    const answered = [...Object.values(STATUS_OF), 400, 404, 405, 413, 415, 429, 500, 503];
    for (const status of answered) expect(TITLES[status], String(status)).toBeTypeOf('string');
  });

  it("are Node's, but for RFC 9110's newer names for 413 and 422", () => {
    for (const [status, title] of Object.entries(TITLES)) {
      const renamed = { 413: 'Content Too Large', 422: 'Unprocessable Content' }[status];
      expect(title, status).toBe(renamed ?? STATUS_CODES[status]);
    }
    expect(JSON.parse(problem(422, 'price_unknown', 'x').body as string).title).toBe(
      'Unprocessable Content',
    );
  });
});
