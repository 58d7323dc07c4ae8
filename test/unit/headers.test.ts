import type { Limit, LimitStatus } from '@sluice/core';
import { openAiDuration, rateLimitHeaders } from '@sluice/lambdas/headers';
import { describe, expect, it } from 'vitest';

const tpm: Limit = {
  kind: 'bucket',
  name: 'tpm',
  metric: 'tokens',
  limit: 10_000,
  periodSeconds: 60,
  burst: 10_000,
};
const rpm: Limit = {
  kind: 'bucket',
  name: 'rpm',
  metric: 'requests',
  limit: 100,
  periodSeconds: 60,
  burst: 100,
};
const daily: Limit = {
  kind: 'quota',
  name: 'daily',
  metric: 'tokens',
  limit: 50_000,
  window: 'day',
  timezone: 'UTC',
};

const status = (
  name: string,
  metric: string,
  limit: number,
  remaining: number,
  resetMs: number,
  scope = 'entity',
): LimitStatus => ({
  scope,
  name,
  metric,
  limit,
  remaining,
  resetMs,
});

describe('rateLimitHeaders', () => {
  const definitions = new Map<string, Limit>([
    ['entity\u0000tpm', tpm],
    ['entity\u0000rpm', rpm],
    ['parent:org\u0000daily', daily],
  ]);

  it('lists every limit in RateLimit-Policy and RateLimit, debt shown as 0', () => {
    const headers = rateLimitHeaders(
      [
        status('tpm', 'tokens', 10_000, -250, 61_500),
        status('rpm', 'requests', 100, 99, 600),
        status('daily', 'tokens', 50_000, 1_000, 3_600_000, 'parent:org'),
      ],
      definitions,
    );

    expect(headers['ratelimit-policy']).toBe(
      '"tpm";q=10000;w=60, "rpm";q=100;w=60, "parent:org.daily";q=50000;w=86400',
    );
    expect(headers.ratelimit).toBe(
      '"tpm";r=0;t=62, "rpm";r=99;t=1, "parent:org.daily";r=1000;t=3600',
    );
  });

  it('maps the tightest token and request limits to OpenAI-style headers', () => {
    const headers = rateLimitHeaders(
      [
        status('tpm', 'tokens', 10_000, 4_000, 36_000),
        status('daily', 'tokens', 50_000, 1_000, 3_600_000, 'parent:org'),
        status('rpm', 'requests', 100, 99, 600),
      ],
      definitions,
    );

    expect(headers).toMatchObject({
      'x-ratelimit-limit-tokens': '50000',
      'x-ratelimit-remaining-tokens': '1000',
      'x-ratelimit-reset-tokens': '1h0m0s',
      'x-ratelimit-limit-requests': '100',
      'x-ratelimit-remaining-requests': '99',
      'x-ratelimit-reset-requests': '600ms',
    });
  });

  it('adds Retry-After in whole seconds, rounded up, when told to', () => {
    expect(rateLimitHeaders([], definitions, 1_001)['retry-after']).toBe('2');
    expect(rateLimitHeaders([], definitions)['retry-after']).toBeUndefined();
  });
});

describe('openAiDuration', () => {
  it.each([
    [20, '20ms'],
    [1_500, '1.5s'],
    [360_000, '6m0s'],
    [3_723_000, '1h2m3s'],
  ])('%d ms is %s', (ms, text) => {
    expect(openAiDuration(ms)).toBe(text);
  });
});
