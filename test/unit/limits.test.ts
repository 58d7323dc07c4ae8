import { parseLimits, ValidationError } from '@sluice/core';
import { parseUsage, parseUsageMap } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ValidationError) return error.field;
    throw error;
  }
  throw new Error('expected a ValidationError');
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ValidationError) return error.message;
    throw error;
  }
  throw new Error('expected a ValidationError');
}

const tpm = { name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' };

describe('parseLimits', () => {
  it('normalizes a rolling limit with the burst defaulting to the limit', () => {
    expect(parseLimits([tpm])).toEqual([
      {
        kind: 'bucket',
        name: 'tpm',
        metric: 'tokens',
        limit: 10_000,
        periodSeconds: 60,
        burst: 10_000,
      },
    ]);
  });

  it('normalizes a calendar quota with UTC by default', () => {
    const [quota] = parseLimits([
      { name: 'monthly', metric: 'cost_micro_usd', limit: 50_000_000, window: 'month' },
    ]);
    expect(quota).toMatchObject({ kind: 'quota', window: 'month', timezone: 'UTC' });
  });

  it.each([
    ['a fractional limit', { ...tpm, limit: 1.5 }, 'limits[0].limit'],
    ['a negative limit', { ...tpm, limit: -1 }, 'limits[0].limit'],
    ['a zero limit', { ...tpm, limit: 0 }, 'limits[0].limit'],
    ['NaN', { ...tpm, limit: Number.NaN }, 'limits[0].limit'],
    ['an unsafe integer', { ...tpm, limit: 2 ** 53 }, 'limits[0].limit'],
    ['a fractional burst', { ...tpm, burst: 2.5 }, 'limits[0].burst'],
    ['an unknown field', { ...tpm, refill: 3 }, 'limits[0]'],
    ['a bad metric', { ...tpm, metric: 'Tokens!' }, 'limits[0].metric'],
    ['a bad name', { ...tpm, name: '' }, 'limits[0].name'],
  ])('refuses %s', (_label, limit, field) => {
    expect(fieldOf(() => parseLimits([limit]))).toBe(field);
  });

  it('refuses a limit that is both rolling and calendar', () => {
    expect(fieldOf(() => parseLimits([{ ...tpm, window: 'day' }]))).toBe('limits[0]');
  });

  it('says a missing field is required', () => {
    expect(() => parseLimits([{ name: 'tpm', limit: 5, per: 'minute' }])).toThrow(
      'limits[0].metric: required',
    );
  });

  it('refuses an unknown time zone', () => {
    const bad = {
      name: 'daily',
      metric: 'requests',
      limit: 5,
      window: 'day',
      timezone: 'Mars/Olympus',
    };
    expect(fieldOf(() => parseLimits([bad]))).toBe('limits[0].timezone');
  });

  it('refuses two limits with one name', () => {
    expect(fieldOf(() => parseLimits([tpm, { ...tpm, limit: 5 }]))).toBe('limits[1].name');
  });
});

describe('budget alerts and shards', () => {
  const daily = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' };

  it('refuses alerts on a quota that may be sharded, naming them', () => {
    expect(fieldOf(() => parseLimits([{ ...daily, alerts: [0.8], max_shards: 4 }]))).toBe(
      'limits[0].alerts',
    );
    expect(fieldOf(() => parseLimits([{ ...daily, alerts: [0.8], shards: 2 }]))).toBe(
      'limits[0].alerts',
    );
  });

  it('refuses alerts on a quota beside a limit that may shard their one item, naming them', () => {
    const beside = (asked: object) => [
      { ...tpm, ...asked },
      { ...daily, alerts: [0.5] },
    ];

    expect(fieldOf(() => parseLimits(beside({ shards: 4 })))).toBe('limits[1].alerts');
    expect(fieldOf(() => parseLimits(beside({ max_shards: 2 })))).toBe('limits[1].alerts');
    expect(messageOf(() => parseLimits(beside({ shards: 4 })))).toBe(
      'limits[1].alerts: budget alerts are not available on a quota whose item may be sharded: "tpm" asks for up to 4 shards',
    );
    // A shadow limit's shards split nothing; a quota without alerts beside shards is fine.
    expect(parseLimits(beside({ shards: 4, mode: 'shadow' }))[1]).toMatchObject({ alerts: [0.5] });
    expect(parseLimits([{ ...tpm, shards: 4 }, daily])).toHaveLength(2);
  });

  it("keeps a shadow quota's alerts beside its own shards, which split nothing", () => {
    const shadow = { ...daily, mode: 'shadow', shards: 2 };
    expect(parseLimits([{ ...shadow, alerts: [0.5] }])[0]).toMatchObject({ alerts: [0.5] });
    expect(parseLimits([shadow], 'limits', [0.8])[0]).toMatchObject({ alerts: [0.8] });
  });

  it('gives a sharded quota no default alerts, and an unsharded one its defaults', () => {
    const [sharded, whole] = parseLimits(
      [
        { ...daily, max_shards: 4 },
        { ...daily, name: 'whole' },
      ],
      'limits',
      [0.5, 1],
    );

    expect(sharded).not.toHaveProperty('alerts');
    expect(whole).toMatchObject({ alerts: [0.5, 1] });
  });
});

describe('parseUsage', () => {
  it('derives tokens from input and output and defaults requests', () => {
    expect(
      parseUsage({ input_tokens: 1_500, output_tokens: 500 }, 'usage', { requests: 1 }),
    ).toEqual({
      input_tokens: 1_500,
      output_tokens: 500,
      tokens: 2_000,
      requests: 1,
    });
  });

  it('keeps an explicit tokens figure', () => {
    expect(parseUsage({ input_tokens: 10, tokens: 99 })).toEqual({ input_tokens: 10, tokens: 99 });
  });

  it.each([
    ['a negative amount', { tokens: -1 }, 'usage.tokens'],
    ['a fraction', { tokens: 0.5 }, 'usage.tokens'],
    ['a string', { tokens: '5' }, 'usage.tokens'],
    ['an unsafe integer', { tokens: 2 ** 53 }, 'usage.tokens'],
    ['a bad metric name', { 'Bad-Metric': 1 }, 'usage.Bad-Metric'],
  ])('refuses %s', (_label, usage, field) => {
    expect(fieldOf(() => parseUsage(usage))).toBe(field);
  });

  it('refuses a derived tokens figure that overflows', () => {
    const big = Number.MAX_SAFE_INTEGER;
    expect(fieldOf(() => parseUsage({ input_tokens: big, output_tokens: big }))).toBe(
      'usage.tokens',
    );
  });
});

describe('validation messages', () => {
  it.each([
    [
      'null',
      { ...tpm, limit: null },
      'limits[0].limit: Invalid input: expected number, received null',
    ],
    [
      'an array',
      { ...tpm, limit: [1] },
      'limits[0].limit: Invalid input: expected number, received array',
    ],
    [
      'an unknown period',
      { ...tpm, per: 'fortnight' },
      'limits[0].per: Invalid option: expected one of "second"|"minute"|"hour"|"day"',
    ],
    [
      'a limit below 1',
      { ...tpm, limit: 0 },
      'limits[0].limit: Too small: expected number to be >=1',
    ],
  ])('says what is wrong with %s', (_label, limit, message) => {
    expect(messageOf(() => parseLimits([limit]))).toBe(message);
  });

  it('counts the items of a list that is too long', () => {
    const limits = Array.from({ length: 17 }, (_, i) => ({ ...tpm, name: `l${i}` }));

    expect(messageOf(() => parseLimits(limits))).toBe(
      'limits: Too big: expected array to have <=16 items',
    );
  });
});

describe('parseUsageMap', () => {
  it('refuses a __proto__ metric, which the schema would pass over unseen', () => {
    const usage = JSON.parse('{"__proto__": 5}');

    expect(messageOf(() => parseUsageMap(usage))).toBe('usage.__proto__: not a metric name');
  });

  it('reads no usage as none, and derives tokens from output alone', () => {
    expect(parseUsageMap(undefined)).toEqual({});
    expect(parseUsage({ output_tokens: 5 })).toEqual({ output_tokens: 5, tokens: 5 });
  });
});
