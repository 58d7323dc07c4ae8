/**
 * Normalized limits and the stored item state that the engine's pure parts (gcra.ts, quota.ts,
 * items.ts, shards.ts) read, for the unit tests that call them without a table.
 */
import type { BucketLimit, QuotaLimit } from '@sluice/core/internal';
import { bucketAttributes } from '../../packages/core/src/store/schema.js';
import type { ItemState } from '../../packages/core/src/store/types.js';

/** A rolling limit named `tpm`, as `parseLimits` leaves it: `limit` per `periodSeconds`. */
export function bucket(
  limit: number,
  periodSeconds = 60,
  burst = limit,
  extra: Partial<BucketLimit> = {},
): BucketLimit {
  return { kind: 'bucket', name: 'tpm', metric: 'tokens', limit, periodSeconds, burst, ...extra };
}

/** A calendar quota named `daily` (or `window`ly), as `parseLimits` leaves it. */
export function quota(
  limit: number,
  window: QuotaLimit['window'] = 'day',
  timezone = 'UTC',
): QuotaLimit {
  return { kind: 'quota', name: 'daily', metric: 'tokens', limit, window, timezone };
}

/**
 * The attributes a bucket's writes store: its TAT (`x`, scaled by the limit), the definition
 * it is scaled by (`"limit/periodSeconds/burst"`), and the revision and adoption deadline (ms)
 * a conversion records.
 */
export function bucketState(
  x: bigint,
  scale: string,
  options: { name?: string; revision?: bigint; adoptUntilMs?: bigint } = {},
): ItemState {
  const name = options.name ?? 'tpm';
  return Object.fromEntries([
    [bucketAttributes.tat(name), x],
    [bucketAttributes.scale(name), scale],
    ...(options.revision === undefined
      ? []
      : [[bucketAttributes.revision(name), options.revision]]),
    ...(options.adoptUntilMs === undefined
      ? []
      : [[bucketAttributes.adoptUntil(name), options.adoptUntilMs]]),
  ]);
}

/** The attributes a quota's writes store: the window's start (epoch ms) and what it used. */
export function quotaState(windowStartMs: number, used: bigint, name = 'daily'): ItemState {
  return Object.fromEntries([
    [bucketAttributes.window(name), BigInt(windowStartMs)],
    [bucketAttributes.used(name), used],
  ]);
}
