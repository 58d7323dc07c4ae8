/**
 * Limits and scope checks as tests write them: rolling limits in the form a request or a plan
 * states them (`tpm(1_000)`), a check of some limits on an item no other test touches, and what
 * remains of them.
 */
import { type ItemKey, itemKeys, type Limiter, parseLimits, type ScopeCheck } from '@sluice/core';

/** Tokens per minute, as a request states it (the burst defaults to the limit). */
export const tpm = (limit: number, burst?: number) => ({
  name: 'tpm',
  metric: 'tokens',
  limit,
  per: 'minute' as const,
  ...(burst ? { burst } : {}),
});

/** Requests per minute, as a request states it. */
export const rpm = (limit: number) => ({
  name: 'rpm',
  metric: 'requests',
  limit,
  per: 'minute' as const,
});

/**
 * Tokens per 30 days, named `tpm` like the others: a bucket that refills one token per 259 s at
 * 10,000, so what remains is exact in tests on the real clock.
 */
export const tpm30Days = (limit: number) => ({
  name: 'tpm',
  metric: 'tokens',
  limit,
  per: 2_592_000 as const,
});

let checks = 0;

/**
 * A check of `limits` (as a request states them) on an entity's item of its own, so tests never
 * share buckets, or on `key` when given.
 */
export function check(limits: unknown = [tpm(1_000)], scope = 'entity', key?: ItemKey): ScopeCheck {
  return {
    scope,
    key: key ?? itemKeys.entityBucket(`check-${++checks}`, 'gpt-4o'),
    limits: parseLimits(limits),
  };
}

/** What remains of every limit of `checks`, in order, as `available` answers. */
export async function remaining(limiter: Limiter, ...checks: ScopeCheck[]): Promise<number[]> {
  return (await limiter.available({ checks })).limits.map((l) => l.remaining);
}
