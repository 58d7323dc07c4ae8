/**
 * Prices turn token usage into `cost_micro_usd`, exactly. A price is USD per million tokens,
 * which is the same number as micro-USD per token; it is kept as a decimal (integer units and a
 * power of ten), so $0.15 per million tokens charges 1,000 tokens exactly 150 micro-USD, and a
 * total is rounded up once, never through floats.
 */
import { MAX_AMOUNT, type Usage } from '../engine/limits.js';
import { ValidationError } from '../errors.js';

/** Decimal places a price may have (USD per million tokens). */
export const MAX_PRICE_DECIMALS = 9;

/** Input tokens read from the provider's prompt cache: part of `input_tokens`, priced apart. */
export const CACHED_INPUT_METRIC = 'cached_input_tokens';

/** Input tokens written to the provider's prompt cache: part of `input_tokens`, priced apart. */
export const CACHE_WRITE_METRIC = 'cache_write_tokens';

/** Decimal places a price may reach inside a lease (a batch discount multiplies two decimals). */
const MAX_LEASE_PRICE_DECIMALS = 2 * MAX_PRICE_DECIMALS;

const DECIMAL = /^(\d{1,9})(?:\.(\d+))?$/;

/** A decimal: `units / 10^scale`. */
export interface Decimal {
  readonly units: bigint;
  readonly scale: number;
}

/**
 * Reads a price exactly: a decimal string ("0.15") or a JSON number, which is read through its
 * shortest decimal form (0.15 → "0.15"), the text it was written as.
 */
export function parseDecimal(
  value: number | string,
  maxDecimals = MAX_PRICE_DECIMALS,
): Decimal | undefined {
  let text = typeof value === 'number' ? numberText(value) : value.trim();
  if (text === undefined) return undefined;
  text = text.replace(/^0+(?=\d)/, '');
  const match = DECIMAL.exec(text);
  if (!match) return undefined;
  const fraction = (match[2] ?? '').replace(/0+$/, '');
  if (fraction.length > maxDecimals) return undefined;
  return { units: BigInt(`${match[1]}${fraction}`), scale: fraction.length };
}

/** A number's shortest decimal text without exponent (1e-7 → "0.0000001"). */
function numberText(n: number): string | undefined {
  if (!Number.isFinite(n) || n < 0) return undefined;
  const text = String(n);
  const exp = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!exp) return text;
  const digits = `${exp[1]}${exp[2] ?? ''}`;
  const point = 1 + Number(exp[3]);
  if (point <= 0) return `0.${'0'.repeat(-point)}${digits}`;
  return digits.length <= point ? digits.padEnd(point, '0') : undefined; // ≥ 1e21 is no price
}

/** A price as sent (see documents.ts's `priceSchema`). */
export interface PriceInput {
  readonly input: number | string;
  readonly output: number | string;
  readonly cached_input?: number | string | undefined;
  readonly cache_write?: number | string | undefined;
  /** The share taken off every part for batch calls, below 1 ("0.5": half price). */
  readonly batch_discount?: number | string | undefined;
}

/** A price, exact: micro-USD per token as decimals. */
export interface Price {
  readonly input: Decimal;
  readonly output: Decimal;
  readonly cachedInput: Decimal;
  readonly cacheWrite: Decimal;
  /** Taken off every part of a batch call ({@link forBatch}); 0 when none. */
  readonly batchDiscount?: Decimal;
}

/** Normalizes a validated price; cached input and cache writes cost the input price unless set. */
export function toPrice(input: PriceInput): Price {
  const read = (v: number | string) => parseDecimal(v) as Decimal;
  const inputPrice = read(input.input);
  const discount = input.batch_discount === undefined ? undefined : read(input.batch_discount);
  return {
    input: inputPrice,
    output: read(input.output),
    cachedInput: input.cached_input === undefined ? inputPrice : read(input.cached_input),
    cacheWrite: input.cache_write === undefined ? inputPrice : read(input.cache_write),
    ...(discount && discount.units > 0n ? { batchDiscount: discount } : {}),
  };
}

/**
 * The price of a batch call: every part times (1 − the batch discount), exactly (the scales
 * add), so the call's cost is still rounded up once, at the end.
 */
export function forBatch(price: Price): Price {
  const d = price.batchDiscount;
  if (!d) return price;
  const one = 10n ** BigInt(d.scale);
  const times = (p: Decimal): Decimal => ({
    units: p.units * (one - d.units),
    scale: p.scale + d.scale,
  });
  return {
    input: times(price.input),
    output: times(price.output),
    cachedInput: times(price.cachedInput),
    cacheWrite: times(price.cacheWrite),
  };
}

/** Price → compact wire form (decimal strings), for lease tokens. */
export function priceToText(price: Price): string[] {
  return [price.input, price.output, price.cachedInput, price.cacheWrite].map(decimalText);
}

/**
 * The inverse of {@link priceToText}. A lease signed before cache-write prices existed has three
 * parts: its cache writes cost the input price, as they did then.
 */
export function priceFromText(text: readonly string[]): Price {
  const [i, o, c, w] = text.map((t) => parseDecimal(t, MAX_LEASE_PRICE_DECIMALS) as Decimal);
  return {
    input: i as Decimal,
    output: o as Decimal,
    cachedInput: c as Decimal,
    cacheWrite: w ?? (i as Decimal),
  };
}

function decimalText(d: Decimal): string {
  if (d.scale === 0) return d.units.toString();
  const digits = d.units.toString().padStart(d.scale + 1, '0');
  return `${digits.slice(0, -d.scale)}.${digits.slice(-d.scale)}`;
}

/**
 * The cost of `usage` in micro-USD, rounded up once. Uncached input, cached input (cache
 * reads), cache writes and output tokens each at their price; a usage that gives only `tokens`
 * (no split) is charged at the higher of the input and output prices, so an estimate never
 * undercharges.
 */
export function costMicroUsd(usage: Usage, price: Price, field = 'usage'): number {
  const parts = [price.input, price.output, price.cachedInput, price.cacheWrite];
  const scale = Math.max(...parts.map((d) => d.scale));
  const at = (d: Decimal) => d.units * 10n ** BigInt(scale - d.scale);
  const [pin, pout, pcached, pwrite] = parts.map(at) as [bigint, bigint, bigint, bigint];
  const split = usage.input_tokens !== undefined || usage.output_tokens !== undefined;
  let total: bigint;
  if (split) {
    const input = BigInt(usage.input_tokens ?? 0);
    const cached = BigInt(usage[CACHED_INPUT_METRIC] ?? 0);
    const written = BigInt(usage[CACHE_WRITE_METRIC] ?? 0);
    if (cached + written > input) {
      const metric = cached > input ? CACHED_INPUT_METRIC : CACHE_WRITE_METRIC;
      throw new ValidationError(
        `${field}.${metric}`,
        'cache reads and writes are part of input_tokens',
      );
    }
    total =
      (input - cached - written) * pin +
      cached * pcached +
      written * pwrite +
      BigInt(usage.output_tokens ?? 0) * pout;
  } else {
    // biome-ignore lint/complexity/useMathMinMax: Math.max does not take bigints
    total = BigInt(usage.tokens ?? 0) * (pin > pout ? pin : pout);
  }
  const divisor = 10n ** BigInt(scale);
  const cost = (total + divisor - 1n) / divisor;
  if (cost > BigInt(MAX_AMOUNT)) throw new ValidationError(`${field}.cost_micro_usd`, 'too large');
  return Number(cost);
}

/** `usage` with `cost_micro_usd` derived from `price` (a reported cost is replaced). */
export function withCost(usage: Usage, price: Price | undefined, field = 'usage'): Usage {
  if (!price) return usage;
  return { ...usage, cost_micro_usd: costMicroUsd(usage, price, field) };
}
