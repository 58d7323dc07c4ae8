/**
 * The configuration cache acquire reads through: a read is reused for its time to live and no
 * longer, a change this process writes is seen at once after `clear()`, and a failed read is
 * not cached. The clock is the test's.
 */
import { ConfigAdmin } from '@sluice/core';
import { CachedConfigSource } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('cfg-cache');

const limits = [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }];

describe('CachedConfigSource', () => {
  it('reuses a read for exactly its time to live, then reads the change made elsewhere', async () => {
    const clock = manualClock();
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    const store = new CountingStore(table.store);
    const cache = new CachedConfigSource({ store, ttlMs: 1_500, clock: clock.now });
    await admin.put('entity', 'ttl-key', { limits }, 'test');

    expect((await cache.entity('ttl-key'))?.disabled).toBeUndefined();
    await admin.put('entity', 'ttl-key', { disabled: true, limits }, 'elsewhere');
    clock.advance(1_499);
    const soon = await cache.entity('ttl-key');
    const readsBefore = store.counts.get;
    clock.advance(1);
    const later = await cache.entity('ttl-key');

    expect(soon?.disabled).toBeUndefined();
    expect(later?.disabled).toBe(true);
    expect(store.counts.get - readsBefore).toBe(1);
  });

  it('caches "not found" too, and forgets everything on clear()', async () => {
    const clock = manualClock();
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    const cache = new CachedConfigSource({ store: table.store, ttlMs: 60_000, clock: clock.now });

    expect(await cache.entity('late-key')).toBeUndefined();
    await admin.put('entity', 'late-key', { limits }, 'test');
    const cached = await cache.entity('late-key');
    cache.clear();
    const cleared = await cache.entity('late-key');

    expect(cached).toBeUndefined();
    expect(cleared?.limits).toHaveLength(1);
  });
});
