/**
 * How usage history's progress item reads, for health, and what a recorded failure may say.
 */
import { StoreUnavailableError } from '@sluice/core';
import {
  errorName,
  progressAttributes as P,
  recordAgeMs,
  SERVICE_DEFAULTS,
  usageHistoryStatus,
} from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';

const NOW = Date.parse('2026-03-01T12:00:30.500Z');

describe('usageHistoryStatus', () => {
  it('is ok with nothing known before anything was recorded', () => {
    expect(usageHistoryStatus(undefined)).toEqual({
      status: 'ok',
      lagMs: null,
      countedAtMs: null,
      failingSinceMs: null,
      error: null,
    });
  });

  it('is behind only over the threshold', () => {
    const at = (lagMs: number) =>
      usageHistoryStatus({ [P.countedAt]: BigInt(NOW), [P.lagMs]: BigInt(lagMs) }).status;

    expect(at(SERVICE_DEFAULTS.usageBehindMs)).toBe('ok');
    expect(at(SERVICE_DEFAULTS.usageBehindMs + 1)).toBe('behind');
  });

  it('is failing while a failure is recorded, whatever the lag, with its error name', () => {
    const status = usageHistoryStatus({
      [P.countedAt]: BigInt(NOW - 5_000),
      [P.lagMs]: 0n,
      [P.failingSince]: BigInt(NOW),
      [P.error]: 'TrimmedDataAccessException',
    });

    expect(status).toEqual({
      status: 'failing',
      lagMs: 0,
      countedAtMs: NOW - 5_000,
      failingSinceMs: NOW,
      error: 'TrimmedDataAccessException',
    });
  });
});

describe('recordAgeMs', () => {
  it('counts from the end of the minute or second a rounded-down record time names', () => {
    const minute = Date.parse('2026-03-01T12:00:00Z');
    const second = Date.parse('2026-03-01T12:00:29Z');

    expect(recordAgeMs(minute, NOW)).toBe(0); // written within this minute: not known to be old
    expect(recordAgeMs(minute, NOW + 120_000)).toBe(90_500);
    expect(recordAgeMs(second, NOW)).toBe(500);
    expect(recordAgeMs(NOW - 1_234, NOW)).toBe(1_234); // to the millisecond: as it is
  });
});

describe('errorName', () => {
  it('names the innermost error, or its system code, and never says its message', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:8000'), {
      code: 'ECONNREFUSED',
    });
    const throttled = Object.assign(new Error('secret table arn:aws:…'), {
      name: 'ProvisionedThroughputExceededException',
    });

    expect(errorName(new StoreUnavailableError('DynamoDB unavailable', { cause: refused }))).toBe(
      'ECONNREFUSED',
    );
    expect(errorName(new StoreUnavailableError('x', { cause: throttled }))).toBe(
      'ProvisionedThroughputExceededException',
    );
    expect(errorName(new Error('password=hunter2'))).toBe('Error');
    expect(errorName('a string')).toBe('Error');
    expect(errorName(Object.assign(new Error('x'), { name: 'Bad name <script>' }))).toBe(
      'Badnamescript',
    );
  });
});
