/**
 * An admin reset of a sharded scope (a top-up) while a split of it is under way: the split starts
 * again from the emptied item, and the reset empties what a split made meanwhile, so the scope is
 * left full, every shard chargeable and in one generation, and no shard born twice.
 */
import {
  type AdminStore,
  ConfigAdmin,
  itemKeys,
  Limiter,
  type LimiterOptions,
  parseLimits,
  type ScopeCheck,
} from '@sluice/core';
import type { ItemUpdate } from '@sluice/core/internal';
import { available, grow, shardKey } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shard-resets');
let n = 0;

const entityScope = (entity: string, limits: unknown): ScopeCheck => ({
  scope: 'entity',
  key: itemKeys.entityBucket(entity, 'gpt-4o'),
  limits: parseLimits(limits),
});

const lease = async (limiter: Limiter, checks: ScopeCheck[], tokens: number) => {
  const r = await asClient(() => limiter.acquire({ checks, usage: { tokens } }));
  if (!r.allowed) throw new Error(`refused: ${JSON.stringify(r)}`);
  return r.leaseId;
};

const remaining = async (clock: { now: () => number }, check: ScopeCheck) => {
  const left = await available(table.limiter({ clock: clock.now }).engine, { checks: [check] });
  return Object.fromEntries(left.limits.map((l) => [l.name, l.remaining]));
};

const limiterOn = (store: LimiterOptions['store'], clock: { now: () => number }) =>
  new Limiter({ store, clock: clock.now });

/** A splitter whose store pauses right after its freeze of `key` to `-to` landed. */
function pausedSplitter(key: { pk: string; sk: string }, to: bigint) {
  let resume = () => {};
  const paused = new Promise<void>((go) => {
    resume = go;
  });
  let frozen = () => {};
  const isFrozen = new Promise<void>((done) => {
    frozen = done;
  });
  const store = new HookedStore(table.store, undefined, async (update, result) => {
    const freezing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === -to);
    if (result.ok && freezing && update.key.sk === key.sk && update.key.pk === key.pk) {
      frozen();
      await paused;
    }
  });
  return { store, isFrozen, resume };
}

describe('a reset of a sharded scope during a split', () => {
  it('leaves the scope full when it lands after the freeze', async () => {
    const clock = manualClock();
    const entity = `reset-split-${++n}`;
    const check = entityScope(entity, [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    await lease(taker, [check], 1_500);
    // A split to 2 has frozen the item, and is paused before it creates the new half.
    const { store, isFrozen, resume } = pausedSplitter(check.key, 2n);
    const growing = grow(limiterOn(store, clock).engine, check.key, 2);
    await isFrozen;
    // The entity is reset (a top-up): every bucket of it cleared.
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    await admin.reset(entity, 'test');
    resume();
    await growing;

    expect(await remaining(clock, check)).toEqual({ tpm: 2_000 });
  });

  it('leaves every shard chargeable when it lands after the freeze', async () => {
    const clock = manualClock();
    const entity = `reset-split-${++n}`;
    const check = entityScope(entity, [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    await lease(taker, [check], 1_500);
    const { store, isFrozen, resume } = pausedSplitter(check.key, 2n);
    const growing = grow(limiterOn(store, clock).engine, check.key, 2);
    await isFrozen;
    await new ConfigAdmin({ store: table.store, clock: clock.now }).reset(entity, 'test');
    resume();
    await growing;
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
    await lease(taker, [check], 1_500);
    // A split to 2 has created its new half (frozen, born) and pauses before thawing anything.
    let resume = () => {};
    const paused = new Promise<void>((go) => {
      resume = go;
    });
    let created = () => {};
    const isCreated = new Promise<void>((done) => {
      created = done;
    });
    // The half is created (in a transaction with a check of the item); the item then keeps the
    // rest and thaws: held just before that.
    const store = new HookedStore(table.store, async (update) => {
      const thawing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === 2n);
      if (thawing && update.key.sk === check.key.sk && update.key.pk === check.key.pk) {
        created();
        await paused;
      }
    });
    const growing = grow(limiterOn(store, clock).engine, check.key, 2);
    await isCreated;
    await new ConfigAdmin({ store: table.store, clock: clock.now }).reset(entity, 'test');
    resume();
    await growing;
    const items = await Promise.all([0, 1, 2].map((s) => table.store.get(shardKey(check.key, s))));
    expect(items.map((i) => i?.n)).toEqual([2n, 2n, undefined]);
    expect(await remaining(clock, check)).toEqual({ tpm: 2_000 });
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
    await lease(taker, [check], 1_500);
    // The reset reads the entity's items (one, not yet split), and its write of that item is held.
    let release = () => {};
    const held = new Promise<void>((go) => {
      release = go;
    });
    let reached = () => {};
    const atWrite = new Promise<void>((done) => {
      reached = done;
    });
    const admin = new ConfigAdmin({
      store: adminStore(async (update) => {
        if (isResetOf(update, check.key)) {
          reached();
          await held;
        }
      }),
      clock: clock.now,
    });
    const resetting = admin.reset(entity, 'test');
    await atWrite;
    // Meanwhile a split to 2 runs from start to end.
    await grow(table.limiter({ clock: clock.now }).engine, check.key, 2);
    release();
    await resetting;
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect({
      remaining: await remaining(clock, check),
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
    await lease(taker, [check], 1_500);
    const half = shardKey(check.key, 1);
    // The split has created its new half and is held before the item keeps its rest and thaws.
    let resume = () => {};
    const paused = new Promise<void>((go) => {
      resume = go;
    });
    let created = () => {};
    const isCreated = new Promise<void>((done) => {
      created = done;
    });
    let once = true;
    const store = new HookedStore(table.store, async (update) => {
      const thawing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === 2n);
      if (once && thawing && update.key.sk === check.key.sk && update.key.pk === check.key.pk) {
        once = false;
        created();
        await paused;
      }
    });
    const growing = grow(limiterOn(store, clock).engine, check.key, 2);
    await isCreated;
    // The reset reads both items; its write of the item lands, its write of the new half is slow.
    let release = () => {};
    const held = new Promise<void>((go) => {
      release = go;
    });
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
          if (isResetOf(update, half)) await held;
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
    resume();
    await growing;
    release();
    await resetting;
    const items = await Promise.all([0, 1].map((s) => table.store.get(shardKey(check.key, s))));
    expect({
      remaining: await remaining(clock, check),
      shards: items.map((i) => i?.n),
      generations: items.map((i) => i?.g),
    }).toEqual({ remaining: { tpm: 2_000 }, shards: [2n, 2n], generations: [1n, 1n] });
  });
});
