/**
 * Prices over HTTP: exact integer cost, rounded up once per call, charged at settlement.
 */
import { describe, expect, it } from 'vitest';
import { acquire, limitOf, put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

const api = fileApi('price');

describe('prices', () => {
  const budget = [
    { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000_000, window: 'month' },
  ] as const;

  it('computes cost exactly for $0.15 per million tokens, rounding the total up once', async () => {
    await put(api.url, 'resources/cheap-model', {
      price: { input: 0.15, output: '0.60', cached_input: '0.075' },
    });
    const cost = async (usage: Record<string, number>) => {
      const res = await acquire(api.url, {
        entity: `payer-${Object.values(usage).join('-')}`,
        resource: 'cheap-model',
        usage,
        limits: budget,
      });
      return 1_000_000_000 - (limitOf(res.body, 'entity', 'usd')?.remaining ?? Number.NaN);
    };

    expect(await cost({ input_tokens: 1_000 })).toBe(150);
    expect(await cost({ input_tokens: 7 })).toBe(2); // 1.05 → 2
    expect(await cost({ input_tokens: 1_000_001 })).toBe(150_001); // 150,000.15 → 150,001
    expect(await cost({ input_tokens: 1_000, cached_input_tokens: 400 })).toBe(120);
    expect(await cost({ input_tokens: 3, output_tokens: 3 })).toBe(3); // 0.45 + 1.8 = 2.25 → 3
  });

  it('never goes through floats: 100 tokens at $0.07 cost 7, not 8', async () => {
    await put(api.url, 'resources/float-trap', { price: { input: 0.07, output: 0.07 } });
    const res = await acquire(api.url, {
      entity: 'float-payer',
      resource: 'float-trap',
      usage: { input_tokens: 100 },
      limits: budget,
    });
    expect(limitOf(res.body, 'entity', 'usd')?.remaining).toBe(1_000_000_000 - 7);
  });

  it('charges actual usage at settlement, and refuses a cost limit with no price', async () => {
    await put(api.url, 'resources/settled-model', { price: { input: '0.15', output: '0.60' } });
    const lease = await acquire(api.url, {
      entity: 'settler',
      resource: 'settled-model',
      usage: { input_tokens: 1_000, output_tokens: 100 },
      limits: budget,
    });
    const adjusted = await request('POST', `${api.url}/v1/adjust`, {
      lease_id: lease.body.lease_id,
      usage: { output_tokens: 2_000 },
    });
    const unpriced = await acquire(api.url, {
      entity: 'settler',
      resource: 'no-price-model',
      usage: { input_tokens: 1 },
      limits: budget,
    });

    expect(adjusted.body.usage).toMatchObject({ cost_micro_usd: 150 + 1_200 });
    expect(unpriced).toMatchObject({ status: 422, body: { code: 'price_unknown' } });
  });
});

describe('prices that match the invoice', () => {
  const budget = [
    { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000_000, window: 'month' },
  ] as const;
  // Anthropic's list price for a Sonnet model: input $3, output $15, cache reads $0.30, cache
  // writes (5 minutes) $3.75 per million tokens; half price in batches.
  const sonnet = {
    input: '3.00',
    output: '15.00',
    cached_input: '0.30',
    cache_write: '3.75',
    batch_discount: '0.5',
  };
  // An Anthropic message: 50 uncached input tokens, 1,800 read from the cache, 248 written to
  // it, 503 output; as the SDK's fromAnthropic maps it (input_tokens counts all three).
  const usage = {
    input_tokens: 2_098,
    cached_input_tokens: 1_800,
    cache_write_tokens: 248,
    output_tokens: 503,
  };
  // The bill: 50 × 3 + 1,800 × 0.30 + 248 × 3.75 + 503 × 15 = 150 + 540 + 930 + 7,545.
  const billed = 9_165;

  it('costs a cached call exactly what the provider bills, at acquire and at settlement', async () => {
    await put(api.url, 'resources/sonnet-invoice', { price: sonnet });
    const lease = await acquire(api.url, {
      entity: 'invoice-payer',
      resource: 'sonnet-invoice',
      usage: { input_tokens: 4_000, output_tokens: 1_000 },
      limits: budget,
    });
    const released = await request('POST', `${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage,
    });

    expect(lease.status).toBe(200);
    expect(released.body.usage).toMatchObject({ ...usage, cost_micro_usd: billed });
    expect(limitOf(released.body, 'entity', 'usd')?.remaining).toBe(1_000_000_000 - billed);
  });

  it('takes the batch discount off the whole call and rounds up once', async () => {
    await put(api.url, 'resources/sonnet-batch', { price: sonnet });
    const res = await acquire(api.url, {
      entity: 'batch-payer',
      resource: 'sonnet-batch',
      usage: { ...usage, input_tokens: 2_099 }, // 51 uncached: 153 + 540 + 930 + 7,545 = 9,168
      batch: true,
      limits: budget,
    });
    // 9,168 / 2 = 4,584 exactly; rounding each part up (76.5 and 3,772.5) would make 4,585.
    expect(limitOf(res.body, 'entity', 'usd')?.remaining).toBe(1_000_000_000 - 4_584);
  });

  it('settles a lease at the price it was acquired with, after the price changes', async () => {
    await put(api.url, 'resources/sonnet-repriced', { price: sonnet });
    const lease = await acquire(api.url, {
      entity: 'repriced-payer',
      resource: 'sonnet-repriced',
      usage: { input_tokens: 10, output_tokens: 10 },
      limits: budget,
    });
    await put(api.url, 'resources/sonnet-repriced', { price: { ...sonnet, cache_write: '30' } });
    const released = await request('POST', `${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage,
    });
    expect(released.body.usage).toMatchObject({ cost_micro_usd: billed });
  });

  it('refuses cache reads and writes beyond the input, and a discount of 1 or more', async () => {
    const bad = await acquire(api.url, {
      entity: 'bad-payer',
      resource: 'sonnet-invoice',
      usage: { input_tokens: 100, cached_input_tokens: 60, cache_write_tokens: 50 },
      limits: budget,
    });
    const free = await request('PUT', `${api.url}/v1/admin/resources/free-batch`, {
      price: { ...sonnet, batch_discount: '1' },
    });

    expect(bad).toMatchObject({ status: 400, body: { code: 'invalid_request' } });
    expect(String(bad.body.field)).toMatch(/^usage\.(cache_write|cached_input)_tokens$/);
    expect(free).toMatchObject({ status: 400, body: { field: 'price.batch_discount' } });
  });
});
