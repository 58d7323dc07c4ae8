/**
 * A quota's budget alerts as an image of its item holds them, and the level of `used` at which
 * each threshold is reached (see alerts.ts).
 */

import { parseDecimal } from '../catalog/price.js';
import { MAX_AMOUNT } from '../engine/limits.js';
import { ceilDiv } from '../engine/nanos.js';
import { bucketAttributes } from '../store/schema.js';
import type { ItemState } from '../store/types.js';

/**
 * The `used` at which `threshold` of `limit` is reached: ceil(threshold × limit), exactly. The
 * threshold is read as the decimal its shortest form writes (`String`: "0.07", "1e-7"), never
 * through floats, where `Math.ceil(0.07 * 100)` is 8.
 *
 * @example
 * thresholdLevel(0.07, 100n); // 7n
 * thresholdLevel(0.8, 7_000n); // 5_600n
 */
export function thresholdLevel(threshold: number, limit: bigint): bigint {
  const share = parseDecimal(threshold, Number.POSITIVE_INFINITY);
  if (!share) throw new RangeError(`a threshold is a finite number from 0, not ${threshold}`);
  return ceilDiv(share.units * limit, 10n ** BigInt(share.scale));
}

/** One quota with budget alerts, as an image of its item holds it. */
export interface AlertedQuota {
  readonly window: bigint;
  readonly used: bigint;
  readonly limit: bigint;
  readonly thresholds: readonly number[];
}

/** An image's attributes by name: the names carry limit names, so they are read from a Map. */
export type Image = ReadonlyMap<string, ItemState[string]>;

/**
 * The quota `name` of an image, when it records thresholds (a cleared definition is "") as the
 * engine writes them: a budget at most MAX_AMOUNT (a level past it is a number DynamoDB refuses,
 * failing the batch), in a window a date names (2^48 ms is the year 10889).
 */
export function alertedQuota(image: Image, name: string): AlertedQuota | undefined {
  const definition = image.get(bucketAttributes.alerts(name));
  const window = image.get(bucketAttributes.window(name));
  const used = image.get(bucketAttributes.used(name));
  if (typeof definition !== 'string' || typeof window !== 'bigint' || typeof used !== 'bigint')
    return undefined;
  const [limitText = '', list = ''] = definition.split('|');
  if (!/^[1-9]\d{0,15}$/.test(limitText) || Number(limitText) > MAX_AMOUNT) return undefined;
  if (window < 0n || window >= 2n ** 48n) return undefined;
  const thresholds = list
    .split(',')
    .map(Number)
    .filter((t) => t > 0 && t <= 1);
  return thresholds.length ? { window, used, limit: BigInt(limitText), thresholds } : undefined;
}

/** Whether `quota` was already at or past `threshold`'s `level` in `window`. */
export function reached(
  quota: AlertedQuota | undefined,
  window: bigint,
  threshold: number,
  level: bigint,
): boolean {
  return (
    quota !== undefined &&
    quota.window === window &&
    quota.used >= level &&
    quota.thresholds.includes(threshold) &&
    thresholdLevel(threshold, quota.limit) === level
  );
}
