/**
 * Time in the engine's unit, nanoseconds as BigInt, and the integer division its limit math
 * rounds with: exact, in the direction each caller asks for (BigInt division truncates toward 0).
 */

/** Nanoseconds per millisecond. */
export const NS_PER_MS = 1_000_000n;
/** Nanoseconds per second. */
export const NS_PER_S = 1_000_000_000n;

/** Integer division rounding toward −∞ (BigInt division truncates toward 0); `b` > 0. */
export function floorDiv(a: bigint, b: bigint): bigint {
  return a >= 0n ? a / b : -((-a + b - 1n) / b);
}

/** Integer division rounding toward +∞; `b` > 0. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  return -floorDiv(-a, b);
}
