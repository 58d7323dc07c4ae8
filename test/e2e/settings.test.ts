/**
 * Settings and the configuration cache over HTTP: a change made through another process, unknown entities, the default price, plan priorities.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquire, limitOf, put } from '../support/admin.js';
import { type Api, startApi, tableName } from '../support/api.js';

// 30-day periods: refill during a test is far below one unit, so counts can be asserted exactly.
const MONTHLY = 2_592_000;

describe('settings and the configuration cache', () => {
  let writer: Api;
  let cached: Api;
  let uncached: Api;
  beforeAll(async () => {
    const table = tableName('cfg-cache');
    [writer, cached, uncached] = await Promise.all([
      startApi(table),
      startApi(table, { SLUICE_CONFIG_CACHE_MS: '600000' }),
      startApi(table, { SLUICE_CONFIG_CACHE_MS: '0' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([writer?.stop(), cached?.stop(), uncached?.stop()]);
  });

  // When a cached read expires is the cache's own test (test/integration/config-cache.test.ts,
  // with a clock it moves); here: the setting reaches the process, either way, timed by nothing.
  it('takes a change made elsewhere after the cache time (SLUICE_CONFIG_CACHE_MS), not before', async () => {
    await put(writer.url, 'entities/cached-key', {
      limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
    });
    const ask = (api: Api) => acquire(api.url, { entity: 'cached-key', resource: 'm', usage: {} });
    expect((await ask(cached)).status).toBe(200);
    expect((await ask(uncached)).status).toBe(200);

    await put(writer.url, 'entities/cached-key', {
      disabled: true,
      limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
    });
    const soon = await ask(cached);
    const later = await ask(uncached);

    expect(soon.status).toBe(200);
    expect(later).toMatchObject({ status: 403, body: { code: 'entity_disabled' } });
  });

  it('refuses unknown entities when set to, and prices cost limits by the default price', async () => {
    const budget = [{ name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000, window: 'day' }];
    const before = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });
    await put(writer.url, 'settings', {
      unknown_entities: 'refuse',
      default_price: { input: '1', output: '2' },
    });
    const walkIn = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });
    await put(writer.url, 'entities/walk-in', {});
    const registered = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });

    expect(before).toMatchObject({ status: 422, body: { code: 'price_unknown' } });
    expect(walkIn).toMatchObject({ status: 403, body: { code: 'unknown_entity' } });
    expect(limitOf(registered.body, 'entity', 'usd')?.remaining).toBe(1_000_000 - 10);
  });

  it('gives a plan its priority’s share of shared limits; a request may only lower it', async () => {
    await put(writer.url, 'plans/half', {
      priority: 50,
      limits: [{ name: 'own_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
    });
    for (const r of ['shared-a', 'shared-b']) {
      await put(writer.url, `resources/${r}`, {
        limits: [{ name: 'provider_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
      });
    }
    await put(writer.url, 'entities/half-a', { plan: 'half' });
    await put(writer.url, 'entities/half-b', { plan: 'half' });
    const count = async (entity: string, resource: string, priority?: number) => {
      let ok = 0;
      for (let i = 0; i < 10; i++) {
        const res = await acquire(writer.url, {
          entity,
          resource,
          usage: {},
          ...(priority ? { priority } : {}),
        });
        if (res.status === 200) ok++;
      }
      return ok;
    };
    // Half of the provider's 10; the plan's own limit would have allowed all 10.
    expect(await count('half-a', 'shared-a', 100)).toBe(5);
    expect(await count('half-b', 'shared-b', 20)).toBe(2);
  });
});
