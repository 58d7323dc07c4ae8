import { parseDuration, providerRetryAfterMs, withProviderBackoff } from '@sluice/client';
import { describe, expect, it } from 'vitest';

const now = Date.parse('2026-11-23T10:00:00Z');

describe('providerRetryAfterMs', () => {
  it('prefers retry-after-ms', () => {
    expect(providerRetryAfterMs({ 'retry-after-ms': '1234', 'retry-after': '9' }, now)).toBe(1_234);
  });

  it('reads retry-after in seconds and as an HTTP date', () => {
    expect(providerRetryAfterMs({ 'Retry-After': '7' }, now)).toBe(7_000);
    expect(providerRetryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 10:00:30 GMT' }, now)).toBe(
      30_000,
    );
  });

  it('waits for the later of OpenAI’s request and token resets', () => {
    const headers = new Headers({
      'x-ratelimit-reset-requests': '20ms',
      'x-ratelimit-reset-tokens': '6m0s',
    });
    expect(providerRetryAfterMs(headers, now)).toBe(360_000);
  });

  it('reads Anthropic’s reset instants', () => {
    const headers = {
      'anthropic-ratelimit-requests-reset': '2026-11-23T10:00:05Z',
      'anthropic-ratelimit-tokens-reset': '2026-11-23T10:00:12Z',
    };
    expect(providerRetryAfterMs(headers, now)).toBe(12_000);
  });

  it('says nothing when the headers say nothing', () => {
    expect(providerRetryAfterMs({}, now)).toBeUndefined();
    expect(parseDuration('soon')).toBeUndefined();
  });
});

describe('withProviderBackoff', () => {
  it('retries a 429 after the wait the provider asked for, then returns the answer', async () => {
    const statuses = [429, 429, 200];
    const waits: number[] = [];
    const result = await withProviderBackoff(
      async () => ({
        status: statuses.shift() ?? 200,
        headers: { 'retry-after-ms': '30' },
        value: 'done',
      }),
      { sleep: async (ms) => void waits.push(ms) },
    );

    expect(result).toMatchObject({ status: 200, value: 'done' });
    expect(statuses).toEqual([]);
    expect(waits).toEqual([30, 30]);
  });

  it('gives up after maxAttempts and returns the last 429; without a hint it backs off with jitter', async () => {
    const waits: number[] = [];
    let calls = 0;
    const result = await withProviderBackoff(
      async () => ({ status: 429, headers: {}, value: ++calls }),
      { maxAttempts: 3, baseDelayMs: 100, sleep: async (ms) => void waits.push(ms) },
    );

    expect(result).toMatchObject({ status: 429, value: 3 });
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeLessThan(100);
    expect(waits[1]).toBeLessThan(200);
  });
});
