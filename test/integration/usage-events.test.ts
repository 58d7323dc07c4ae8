/**
 * Where an acquire's usage event lands when its first scope has no limits of its own (an entity
 * whose limits are all entity-wide: the first check is its resource item, empty), and a call
 * refused by its second scope after the first wrote its event.
 */
import { itemKeys, parseLimits, UsageAggregator, usageHistory } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { streamed } from '../support/streams.js';
import { freshTable } from '../support/table.js';

describe('the usage event', () => {
  it('counts a lease whose first scope has no limits', async () => {
    const table = await freshTable('u30-event');
    const limiter = table.limiter();
    const entity = 'key-wide';
    const checks = [
      { scope: 'entity', key: itemKeys.entityBucket(entity, 'm'), limits: [] },
      {
        scope: 'entity',
        key: itemKeys.entityWide(entity),
        limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute' }]),
      },
    ];
    const context = { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] };
    const a = await limiter.acquire({ checks, usage: { tokens: 100 }, context });
    const b = await limiter.acquire({ checks, usage: { tokens: 100 }, context });
    if (!a.allowed || !b.allowed) throw new Error('refused');
    await limiter.release(b.leaseId, { tokens: 40 });
    const changes = await streamed(table);
    await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(changes);
    const rows = await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: Date.now() - 86_400_000,
      toMs: Date.now() + 86_400_000,
    });
    expect(rows.map((r) => [r.usage, r.leases])).toEqual([[{ tokens: 140, requests: 2 }, 2]]);
  });

  it('a call refused by its second scope after the first wrote its event counts nothing', async () => {
    const table = await freshTable('u30-event-b');
    const limiters = [table.limiter(), table.limiter(), table.limiter()];
    const entity = 'key-2nd';
    const checks = [
      {
        scope: 'entity',
        key: itemKeys.entityBucket(entity, 'm'),
        limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute' }]),
      },
      {
        scope: 'parent:org-2nd',
        key: itemKeys.entityBucket('org-2nd', 'm'),
        limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute' }]),
      },
    ];
    const context = {
      resource: 'm',
      scopes: [
        { entity, timezone: 'UTC' },
        { entity: 'org-2nd', timezone: 'UTC' },
      ],
    };
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (limiters[i % 3] as (typeof limiters)[number]).acquire({
          checks,
          usage: { tokens: 100 },
          context,
        }),
      ),
    );
    const admitted = results.filter((r) => r.allowed).length;
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThan(30);
    const changes = await streamed(table);
    await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(changes);
    for (const who of [entity, 'org-2nd', '*']) {
      const rows = await usageHistory(table.store, {
        entity: who,
        granularity: 'day',
        fromMs: Date.now() - 86_400_000,
        toMs: Date.now() + 86_400_000,
      });
      expect({ who, got: rows.map((r) => [r.usage, r.leases]) }).toEqual({
        who,
        got: [[{ tokens: 100 * admitted, requests: admitted }, admitted]],
      });
    }
  });
});
