import { thresholdLevel } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

describe('budget alert levels', () => {
  it('are ceil(threshold × limit) in exact decimal arithmetic, never through floats', () => {
    expect(thresholdLevel(0.07, 100n)).toBe(7n); // Math.ceil(0.07 * 100) is 8
    expect(thresholdLevel(0.1, 3n)).toBe(1n); // 0.30000000000000004 in floats, 0.3 exactly
    expect(thresholdLevel(0.29, 100n)).toBe(29n); // 28.999999999999996 in floats
    expect(thresholdLevel(1e-7, 10n ** 9n)).toBe(100n); // String(1e-7) is "1e-7"
    expect(thresholdLevel(1, 10_000n)).toBe(10_000n);
    expect(thresholdLevel(1, BigInt(Number.MAX_SAFE_INTEGER))).toBe(
      BigInt(Number.MAX_SAFE_INTEGER),
    );
    expect(thresholdLevel(0.8, 7_000n)).toBe(5_600n);
    expect(thresholdLevel(0.5, 3n)).toBe(2n); // 1.5 rounds up
  });

  it('refuse what is not a share', () => {
    expect(() => thresholdLevel(-0.5, 100n)).toThrow(RangeError);
    expect(() => thresholdLevel(Number.NaN, 100n)).toThrow(RangeError);
    expect(() => thresholdLevel(Number.POSITIVE_INFINITY, 100n)).toThrow(RangeError);
  });

  it('equal a BigInt reference for any decimal threshold and limit', () => {
    fc.assert(
      fc.property(
        // A threshold `units / 10^scale` in (0, 1] with up to 15 significant digits, which a
        // double's shortest form gives back as written.
        fc
          .integer({ min: 0, max: 24 })
          .chain((scale) =>
            fc.tuple(
              fc.constant(scale),
              fc.integer({ min: 1, max: scale === 0 ? 1 : 10 ** Math.min(scale, 15) - 1 }),
            ),
          ),
        fc.bigInt({ min: 1n, max: BigInt(Number.MAX_SAFE_INTEGER) }),
        ([scale, units], limit) => {
          const divisor = 10n ** BigInt(scale);
          const expected = (BigInt(units) * limit + divisor - 1n) / divisor;
          expect(thresholdLevel(Number(`${units}e-${scale}`), limit)).toBe(expected);
        },
      ),
      { seed: 20_260_115, numRuns: 2_000 },
    );
  });
});
