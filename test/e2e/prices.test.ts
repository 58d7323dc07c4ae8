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
