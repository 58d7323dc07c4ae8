import { toPrice, ValidationError } from '@sluice/core';
import {
  costMicroUsd,
  forBatch,
  parseDecimal,
  priceFromText,
  priceToText,
} from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

describe('parseDecimal', () => {
  it('reads strings and JSON numbers as the decimal they were written as', () => {
    expect(parseDecimal('0.15')).toEqual({ units: 15n, scale: 2 });
    expect(parseDecimal(0.15)).toEqual({ units: 15n, scale: 2 });
    expect(parseDecimal('2.50')).toEqual({ units: 25n, scale: 1 });
    expect(parseDecimal(1e-7)).toEqual({ units: 1n, scale: 7 });
    expect(parseDecimal('10')).toEqual({ units: 10n, scale: 0 });
    expect(parseDecimal('007.5')).toEqual({ units: 75n, scale: 1 });
  });

  it('refuses what is not a small non-negative decimal', () => {
    for (const bad of ['-1', '1e3', 'abc', '', '1.0000000001', 1e21, -0.5, Number.NaN, '1,5']) {
      expect(parseDecimal(bad as string)).toBeUndefined();
    }
  });
});

describe('costMicroUsd', () => {
  const price = toPrice({ input: '0.15', output: '0.60', cached_input: '0.075' });

  it('charges each kind of token at its price and rounds the total up once', () => {
    expect(costMicroUsd({ input_tokens: 1_000 }, price)).toBe(150);
    expect(costMicroUsd({ input_tokens: 1_000, cached_input_tokens: 1_000 }, price)).toBe(75);
    expect(costMicroUsd({ input_tokens: 1, output_tokens: 1 }, price)).toBe(1); // 0.75 → 1
    expect(costMicroUsd({ tokens: 10 }, price)).toBe(6); // unsplit: the higher price
    expect(costMicroUsd({}, price)).toBe(0);
  });

  it('refuses cached tokens beyond the input, naming the field', () => {
    expect(() => costMicroUsd({ input_tokens: 1, cached_input_tokens: 2 }, price)).toThrow(
      ValidationError,
    );
  });

  it('names the cache writes when they alone exceed the input', () => {
    const usage = { input_tokens: 1, cache_write_tokens: 2 };

    expect(() => costMicroUsd(usage, price)).toThrow('usage.cache_write_tokens');
  });

  it('charges output alone, and an unsplit usage at the input price when it is the higher', () => {
    const inputHeavy = toPrice({ input: '1', output: '0.5' });

    expect(costMicroUsd({ output_tokens: 10 }, price)).toBe(6);
    expect(costMicroUsd({ tokens: 10 }, inputHeavy)).toBe(10);
  });

  it('refuses a cost too large to count exactly', () => {
    const dear = toPrice({ input: '3', output: '15' });

    expect(() => costMicroUsd({ tokens: 1e15 }, dear, 'estimate')).toThrow(
      'estimate.cost_micro_usd: too large',
    );
  });

  it('equals the exact rational cost rounded up, for any price and usage', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        (units, scale, input, output) => {
          const digits = String(units).padStart(scale + 1, '0');
          const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
          const p = toPrice({ input: text, output: text });
          const exact = BigInt(units) * BigInt(input + output);
          const divisor = 10n ** BigInt(scale);
          const expected = Number((exact + divisor - 1n) / divisor);
          expect(costMicroUsd({ input_tokens: input, output_tokens: output }, p)).toBe(expected);
        },
      ),
    );
  });
});

describe('batch prices and lease prices', () => {
  const price = toPrice({ input: '3', output: '15', cached_input: '0.3', batch_discount: '0.5' });

  it('multiplies every part by (1 − discount) exactly, keeping one rounding per call', () => {
    const batch = forBatch(price);
    // 1 input + 1 output at half price: 1.5 + 7.5 = 9 exactly.
    expect(costMicroUsd({ input_tokens: 1, output_tokens: 1 }, batch)).toBe(9);
    // 1 cached input at half of 0.3: 0.15 → 1 (rounded once).
    expect(costMicroUsd({ input_tokens: 1, cached_input_tokens: 1 }, batch)).toBe(1);
    expect(forBatch(toPrice({ input: '3', output: '15' }))).toEqual(
      toPrice({ input: '3', output: '15' }),
    );
  });

  it("survives a lease's round trip, and reads a lease signed before cache-write prices", () => {
    const batch = forBatch(price);
    expect(priceFromText(priceToText(batch))).toEqual(batch);
    const old = priceFromText(['3', '15', '0.3']);
    expect(costMicroUsd({ input_tokens: 10, cache_write_tokens: 10 }, old)).toBe(30);
  });
});
