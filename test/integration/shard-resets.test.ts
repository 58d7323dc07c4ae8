/**
 * An admin reset of a sharded scope (a top-up) while a split of it is under way: the split starts
 * again from the emptied item, and the reset empties what a split made meanwhile, so the scope is
 * left full, every shard chargeable and in one generation, and no shard born twice.
 */
import { type AdminStore, ConfigAdmin, itemKeys, parseLimits, type ScopeCheck } from '@sluice/core';
import type { ItemUpdate } from '@sluice/core/internal';
import { grow, shardKey } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { leaseOf, limiterOn, remainingOf } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shard-resets');
let n = 0;

const entityScope = (entity: string, limits: unknown): ScopeCheck => ({
  scope: 'entity',
  key: itemKeys.entityBucket(entity, 'gpt-4o'),
  limits: parseLimits(limits),
});

/** A splitter whose store pauses right after its freeze of `key` to `-to` landed. */
function pausedSplitter(key: { pk: string; sk: string }, to: bigint) {
  const freeze = holdPoint();
  const store = new HookedStore(table.store, undefined, async (update, result) => {
    const freezing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === -to);
    if (result.ok && freezing && update.key.sk === key.sk && update.key.pk === key.pk) {
      await freeze.arrive();
    }
  });
  return { store, isFrozen: freeze.reached, resume: freeze.release };
}

/**
 * 1,500 of a 2,000 burst taken on one item; a split to 2 freezes it and is held there while the
 * entity is reset (a top-up), then goes on.
 */
async function resetAfterFreeze() {
  const clock = manualClock();
  const entity = `reset-split-${++n}`;
  const check = entityScope(entity, [
    { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
  ]);
  await leaseOf(table.limiter({ clock: clock.now }), [check], 1_500);
  const { store, isFrozen, resume } = pausedSplitter(check.key, 2n);
  const growing = grow(limiterOn(store, clock.now).engine, check.key, 2);
  await isFrozen;
  await new ConfigAdmin({ store: table.store, clock: clock.now }).reset(entity, 'test');
  resume();
  await growing;
  return { clock, check };
}

describe('a reset of a sharded scope during a split', () => {
  it('leaves the scope full when it lands after the freeze', async () => {
    const { clock, check } = await resetAfterFreeze();
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000 });
  });

  it('leaves every shard chargeable when it lands after the freeze', async () => {
    const { clock, check } = await resetAfterFreeze();
    // A minute later every bucket has refilled whatever it held: the scope takes its burst again.
    clock.advance(60_000);
    const fresh = table.limiter({ clock: clock.now });
    let admitted = 0;
    for (let i = 0; i < 20; i++) {
      const r = await asClient(() => fresh.acquire({ checks: [check], usage: { tokens: 100 } }), 3)
        .then((a) => (a.allowed ? 100 : 0))
        .catch(() => 0);
      admitted += r;
    }
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect({ admitted, scales: items.map((i) => i?.s_tpm) }).toEqual({
      admitted: 2_000,
      scales: ['100000/60/2000', '100000/60/2000'],
    });
  });
  it('leaves no shard born twice when it lands between the new half and the thaw', async () => {
    const clock = manualClock();
    const entity = `reset-born-${++n}`;
    const check = entityScope(entity, [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    await leaseOf(taker, [check], 1_500);
    // A split to 2 has created its new half (frozen, born) and pauses before thawing anything.
    const split = holdPoint();
    // The half is created (in a transaction with a check of the item); the item then keeps the
    // rest and thaws: held just before that.
    const store = new HookedStore(table.store, async (update) => {
      const thawing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === 2n);
      if (thawing && update.key.sk === check.key.sk && update.key.pk === check.key.pk) {
        await split.arrive();
      }
    });
    const growing = grow(limiterOn(store, clock.now).engine, check.key, 2);
    await split.reached;
    await new ConfigAdmin({ store: table.store, clock: clock.now }).reset(entity, 'test');
    split.release();
    await growing;
    const items = await Promise.all([0, 1, 2].map((s) => table.store.get(shardKey(check.key, s))));
    expect(items.map((i) => i?.n)).toEqual([2n, 2n, undefined]);
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000 });
  });
});

/** The admin's store, its single-item updates first through `before` (reads, queries untouched). */
function adminStore(before: (update: ItemUpdate) => Promise<void>): AdminStore {
  const inner = table.store;
  return {
    get: (key) => inner.get(key),
    query: (pk, options) => inner.query(pk, options),
    transact: (writes, options) => inner.transact(writes, options),
    update: async (update) => {
      await before(update);
      return inner.update(update);
    },
  } as AdminStore;
}

const isResetOf = (update: ItemUpdate, key: { pk: string; sk: string }) =>
  update.key.pk === key.pk && update.key.sk === key.sk && update.set.some((a) => a.attr === 'g');

describe('a reset whose writes race a split', () => {
  it('leaves the scope full when it read the scope before the freeze and writes after the split', async () => {
    const clock = manualClock();
    const entity = `r4-early-${++n}`;
    const check = entityScope(entity, [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    await leaseOf(taker, [check], 1_500);
    // The reset reads the entity's items (one, not yet split), and its write of that item is held.
    const write = holdPoint();
    const admin = new ConfigAdmin({
      store: adminStore(async (update) => {
        if (isResetOf(update, check.key)) {
          await write.arrive();
        }
      }),
      clock: clock.now,
    });
    const resetting = admin.reset(entity, 'test');
    await write.reached;
    // Meanwhile a split to 2 runs from start to end.
    await grow(table.limiter({ clock: clock.now }).engine, check.key, 2);
    write.release();
    await resetting;
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect({
      remaining: await remainingOf(table, clock.now, check),
      generations: items.map((i) => i?.g),
    }).toEqual({ remaining: { tpm: 2_000 }, generations: [1n, 1n] });
  });

  it('leaves every shard in one generation when its write of the new half lands after the split emptied it', async () => {
    const clock = manualClock();
    const entity = `r4-split-gen-${++n}`;
    const check = entityScope(entity, [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    await leaseOf(taker, [check], 1_500);
    const half = shardKey(check.key, 1);
    // The split has created its new half and is held before the item keeps its rest and thaws.
    const split = holdPoint();
    let once = true;
    const store = new HookedStore(table.store, async (update) => {
      const thawing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === 2n);
      if (once && thawing && update.key.sk === check.key.sk && update.key.pk === check.key.pk) {
        once = false;
        await split.arrive();
      }
    });
    const growing = grow(limiterOn(store, clock.now).engine, check.key, 2);
    await split.reached;
    // The reset reads both items; its write of the item lands, its write of the new half is slow.
    const halfWrite = holdPoint();
    let itemReset = () => {};
    const itemDone = new Promise<void>((done) => {
      itemReset = done;
    });
    const inner = table.store;
    const admin = new ConfigAdmin({
      store: {
        get: (key) => inner.get(key),
        query: (pk, options) => inner.query(pk, options),
        transact: (writes, options) => inner.transact(writes, options),
        update: async (update) => {
          if (isResetOf(update, half)) await halfWrite.arrive();
          const result = await inner.update(update);
          if (isResetOf(update, check.key)) itemReset();
          return result;
        },
      } as AdminStore,
      clock: clock.now,
    });
    const resetting = admin.reset(entity, 'test');
    await itemDone;
    // The split goes on: it finds the item in the new generation and clears the half to it.
    split.release();
    await growing;
    halfWrite.release();
    await resetting;
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect({
      remaining: await remainingOf(table, clock.now, check),
      shards: items.map((i) => i?.n),
      generations: items.map((i) => i?.g),
    }).toEqual({ remaining: { tpm: 2_000 }, shards: [2n, 2n], generations: [1n, 1n] });
  });
});
