/**
 * Refunds into sharded buckets after a split moved their backlog: a cancelled or released lease
 * gives back everything it holds, wherever the split put its units (the scope's other shards, one
 * frozen mid-split, shards born since, shards converted to a changed definition), exactly once,
 * and a refused acquire's give-back does too. The clock is held still but where it moves (then
 * a refund returns no unit that has refilled), so once its leases are cancelled a scope is full
 * again.
 */
import {
  itemKeys,
  Limiter,
  parseLimits,
  type ScopeCheck,
  type Store,
  StoreUnavailableError,
} from '@sluice/core';
import type { ItemCheck, ItemUpdate, TransactResult } from '@sluice/core/internal';
import { available, grow, shardKey } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { leaseOf, limiterOn, remainingOf } from '../support/shards.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('shard-refunds');

const scope = (resource: string, limits: unknown, revision?: number): ScopeCheck => ({
  scope: 'resource',
  key: itemKeys.resourceBucket(resource),
  limits: parseLimits(limits).map((l) => (revision ? { ...l, revision } : l)),
});

/**
 * Two scopes of one 2,000 burst: `a` split to 2, `b` full, so that a call on both takes from a
 * shard of `a` and is refused by `b` (its charge on `a` given back). `charges` tells a write that
 * takes from `a`.
 */
async function refusedOnB(name: string) {
  const clock = manualClock();
  const limits = [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 }];
  const [a, b] = [scope(`${name}-a`, limits), scope(`${name}-b`, limits)];
  const other = table.limiter({ clock: clock.now });
  await grow(other.engine, a.key, 2);
  await leaseOf(other, [b], 2_000);
  const charges = (update: ItemUpdate) =>
    update.key.pk === a.key.pk &&
    update.set.some((x) => x.attr === 'b_tpm' && ('value' in x || ('add' in x && x.add > 0n)));
  return { clock, a, b, other, charges };
}

/**
 * 1,500 of a 2,000 burst taken while the scope is one item; then a split to 2 leaves that item
 * its share's burst (1,000) and moves 500 to the new shard, where the lease's refund must find it.
 */
async function splitUnderLease(name: string) {
  const clock = manualClock();
  const check = scope(name, [
    { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
  ]);
  const taker = table.limiter({ clock: clock.now });
  const id = await leaseOf(taker, [check], 1_500);
  await grow(taker.engine, check.key, 2);
  return { clock, check, taker, id };
}

describe('a refund after a split', () => {
  it('finds the units a split moved onto a shard now frozen for another split', async () => {
    const { clock, check, id } = await splitUnderLease('frozen-target');

    // A second split (to 4) is under way: shard 1 is frozen, its splitter paused after freezing.
    const freeze = holdPoint();
    const shard1 = shardKey(check.key, 1);
    const splitterStore = new HookedStore(table.store, undefined, async (update, result) => {
      const freezing = update.set.some((a) => a.attr === 'n' && 'value' in a && a.value === -4n);
      if (result.ok && freezing && update.key.sk === shard1.sk && update.key.pk === shard1.pk) {
        await freeze.arrive();
      }
    });
    const splitter = limiterOn(splitterStore, clock.now);
    const growing = grow(splitter.engine, check.key, 4);
    await freeze.reached;

    // The lease is cancelled meanwhile (another process): shard 0 holds what it can, the rest
    // belongs on shard 1 (or its half), which is frozen.
    const settler = table.limiter({ clock: clock.now });
    await asClient(() => settler.release(id));
    freeze.release();
    await growing;

    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000 });
  });

  it('finds the units on shards born by a split the settling process has not seen', async () => {
    const clock = manualClock();
    const check = scope('split-again', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const settler = table.limiter({ clock: clock.now });
    await grow(taker.engine, check.key, 2);
    // Small leases stand on both shards of 2.
    const tatOf = async (s: number) => (await table.store.get(shardKey(check.key, s)))?.b_tpm;
    for (let i = 0; i < 40; i++) {
      if ((await Promise.all([0, 1].map(tatOf))).every((x) => x !== undefined)) break;
      await leaseOf(taker, [check], 10);
    }
    expect((await Promise.all([0, 1].map(tatOf))).every((x) => x !== undefined)).toBe(true);
    // The settling process once looked at the scope: it remembers 2 shards.
    await available(settler.engine, { checks: [check] });
    const before = await remainingOf(table, clock.now, check);
    // 900 taken on one shard of 2 (its share holds 1,000); then a split to 4 leaves that shard
    // its new share's burst (500) and moves the rest to its new half.
    const id = await leaseOf(taker, [check], 900);
    await grow(taker.engine, check.key, 4);

    await asClient(() => settler.release(id));

    expect(await remainingOf(table, clock.now, check)).toEqual(before);
  });

  it('finds the units on a shard converted to a changed definition since', async () => {
    const clock = manualClock();
    const limit = { name: 'tpm', metric: 'tokens', per: 'minute', burst: 2_000 };
    const before = scope('redefined', [{ ...limit, limit: 100_000 }], 1);
    const after = scope('redefined', [{ ...limit, limit: 120_000 }], 2); // same burst, faster
    const taker = table.limiter({ clock: clock.now });
    const id = await leaseOf(taker, [before], 1_500);
    await grow(taker.engine, before.key, 2);

    // The limit is edited: calls under the new revision convert the shards they land on (the
    // backlog is kept in units of usage). Each such call is cancelled again.
    const current = table.limiter({ clock: clock.now });
    const scaleOf = async (s: number) => (await table.store.get(shardKey(before.key, s)))?.s_tpm;
    for (let i = 0; i < 40; i++) {
      if ((await scaleOf(1)) === '120000/60/2000') break;
      const small = await leaseOf(current, [after], 1);
      await asClient(() => current.release(small));
    }
    // Shard 0 is full (its 1,000 of the lease): only shard 1 takes calls, and is converted.
    expect(await Promise.all([0, 1].map(scaleOf))).toEqual(['100000/60/2000', '120000/60/2000']);
    expect(await remainingOf(table, clock.now, after)).toEqual({ tpm: 500 });

    // The lease taken under the old definition is cancelled.
    const settler = table.limiter({ clock: clock.now });
    await asClient(() => settler.release(id));

    expect(await remainingOf(table, clock.now, after)).toEqual({ tpm: 2_000 });
  });

  it('settles a lease whose refunds spread over more shards than one transaction holds', {
    timeout: 60_000,
  }, async () => {
    const clock = manualClock();
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 6_400, per: 'minute' }];
    const a = scope('wide-a', limits);
    const b = scope('wide-b', limits);
    const taker = table.limiter({ clock: clock.now });
    // Each whole bucket full; a split to 64 leaves every shard 100 of it.
    const id = await leaseOf(taker, [a, b], 6_400);
    await Promise.all([grow(taker.engine, a.key, 64), grow(taker.engine, b.key, 64)]);

    await asClient(() => table.limiter({ clock: clock.now }).release(id));
    // One transaction of at most 100 items: the lease's, its two shards', and 97 others that
    // each give back their 100. What did not fit stays charged until it refills; nothing more
    // than the lease took comes back.
    const [left, right] = [
      (await remainingOf(table, clock.now, a)).tpm,
      (await remainingOf(table, clock.now, b)).tpm,
    ];
    expect(left).toBeLessThanOrEqual(6_400);
    expect(right).toBeLessThanOrEqual(6_400);
    expect((left ?? 0) + (right ?? 0)).toBe(100 * (2 + 97));
  });
  it("gives back a refused acquire's charge that a split moved away meanwhile", async () => {
    const { clock, a, b, other, charges } = await refusedOnB('give-back');
    // The call takes 1,000 from a shard of a (its share's whole burst) and is refused by b; right
    // after its charge lands, a split to 4 leaves that shard 500 and moves 500 to its new half.
    let armed = true;
    const store = new HookedStore(table.store, undefined, async (update, result) => {
      if (armed && result.ok && charges(update)) {
        armed = false;
        await grow(other.engine, a.key, 4);
      }
    });
    const caller = limiterOn(store, clock.now);
    const r = await asClient(() => caller.acquire({ checks: [a, b], usage: { tokens: 1_000 } }));
    expect(r.allowed).toBe(false);
    expect(armed).toBe(false);
    await caller.engine.idle();

    // Refused: nothing of it stays charged.
    expect(await remainingOf(table, clock.now, a)).toEqual({ tpm: 2_000 });
  });

  it('settles once when the same cancel is sent by four processes at once after a split', async () => {
    const clock = manualClock();
    const check = scope('duplicates', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const ids = [await leaseOf(taker, [check], 1_500), await leaseOf(taker, [check], 300)];
    await grow(taker.engine, check.key, 4);
    const settlers = [1, 2, 3, 4].map(() => table.limiter({ clock: clock.now }));
    await Promise.all(
      settlers.flatMap((s) => [
        asClient(() => s.release(ids[0] as string)),
        asClient(() => s.release(ids[0] as string)),
      ]),
    );
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 1_700 });
    await asClient(() => (settlers[0] as Limiter).release(ids[1] as string, { tokens: 100 }));
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 1_900 });
  });

  it('gives back exactly after an adjust up before a split and a release down after it', async () => {
    const clock = manualClock();
    const check = scope('adjust-release', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
      { name: 'small', metric: 'tokens', limit: 50_000, per: 'minute', burst: 1_600 },
      { name: 'daily', metric: 'tokens', limit: 5_000, window: 'day' },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const id = await leaseOf(taker, [check], 1_000);
    await asClient(() => taker.adjust(id, { tokens: 1_500 }));
    await grow(taker.engine, check.key, 4);
    const settler = table.limiter({ clock: clock.now });
    await asClient(() => settler.release(id, { tokens: 100 }));
    expect(await remainingOf(table, clock.now, check)).toEqual({
      tpm: 1_900,
      small: 1_500,
      daily: 4_900,
    });
  });
  it("gives back every unit when many cancels race for the same shards' backlog", {
    timeout: 60_000,
  }, async () => {
    const clock = manualClock();
    const check = scope('racing', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
      { name: 'small', metric: 'tokens', limit: 100_000, per: 'minute', burst: 1_920 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) ids.push(await leaseOf(taker, [check], 30));
    await grow(taker.engine, check.key, 8);
    const settlers = [1, 2, 3, 4].map(() => table.limiter({ clock: clock.now }));
    await Promise.all(ids.map((id, i) => asClient(() => (settlers[i % 4] as Limiter).release(id))));
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000, small: 1_920 });
  });
});

describe('a refund after a split, with the clock moving', () => {
  it('returns no more than a whole bucket would: units that refilled stay refilled', async () => {
    // 10 tokens a second, burst 20.
    const limits = [{ name: 'tps', metric: 'tokens', limit: 600, per: 'minute', burst: 20 }];
    const split = scope('moving-split', limits);
    const whole = scope('moving-whole', limits);
    const clock = manualClock();
    const taker = table.limiter({ clock: clock.now });
    // t=0: A takes the whole burst of each scope.
    const a = [await leaseOf(taker, [split], 20), await leaseOf(taker, [whole], 20)];
    // t=1s: 10 have refilled; B takes them.
    clock.advance(1_000);
    await leaseOf(taker, [split], 10);
    await leaseOf(taker, [whole], 10);
    // Then the one scope splits in two (no time passes).
    await grow(taker.engine, split.key, 2);
    // A is cancelled: it still holds 10 of its 20 (10 refilled while it was held).
    const settler = table.limiter({ clock: clock.now });
    await asClient(() => settler.release(a[0] as string));
    await asClient(() => settler.release(a[1] as string));
    const unsplit = await remainingOf(table, clock.now, whole);
    expect(unsplit).toEqual({ tps: 10 });
    // The split scope should hold at most what the whole one does.
    expect(await remainingOf(table, clock.now, split)).toEqual(unsplit);
  });
});

describe('a refund after a split the settling process has read past', () => {
  it('gives back all it holds when a split lands between its read of the shards and its write', async () => {
    const { clock, check, taker, id } = await splitUnderLease('split-after-look');

    // A settling process that has never seen the scope: its first try (the scope whole) fails and
    // shows shard 0 of 2; the rest of the refund has no place it knows, so it reads the shards
    // (findRoom); its transaction with the spill onto shard 1 then meets a split to 4 that
    // happened right after that read.
    let armed = true;
    const store = new HookedStore(table.store, undefined, undefined, async (writes) => {
      const spilling = writes.some((w) => w.key.pk === check.key.pk && w.key.sk.endsWith('#1'));
      if (!armed || !spilling) return;
      armed = false;
      await grow(taker.engine, check.key, 4);
    });
    const settler = limiterOn(store, clock.now);
    await asClient(() => settler.release(id));
    expect(armed).toBe(false);

    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000 });
  });
});

/** A store whose transactions may lose their answer after applying (a 500 / dropped connection). */
class LosingStore extends HookedStore {
  constructor(
    inner: Store,
    readonly lose: (writes: readonly (ItemUpdate | ItemCheck)[], result: TransactResult) => boolean,
  ) {
    super(inner);
  }
  override async transact(writes: readonly (ItemUpdate | ItemCheck)[]): Promise<TransactResult> {
    const result = await this.inner.transact(writes);
    if (this.lose(writes, result))
      throw new StoreUnavailableError('DynamoDB unavailable: InternalServerError');
    return result;
  }
}

describe('a refund after a split whose answer is lost', () => {
  it('applies once when a release with spills is sent again after its answer was lost', async () => {
    const clock = manualClock();
    const check = scope('lost-settle', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const id = await leaseOf(taker, [check], 1_500);
    const other = await leaseOf(taker, [check], 300);
    await grow(taker.engine, check.key, 4);
    let lost = 0;
    const store = new LosingStore(table.store, (writes, result) => {
      const spills = writes.filter((w) => w.key.pk === check.key.pk).length > 1;
      if (result.ok && spills && lost === 0) {
        lost++;
        return true;
      }
      return false;
    });
    const settler = limiterOn(store, clock.now);
    await settler.engine.readAgain([check.key]);
    await available(settler.engine, { checks: [check] });
    const answer = await asClient(() => settler.release(id, { tokens: 100 }));
    expect(lost).toBe(1);
    expect(answer.settled).toBe(true);
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 2_000 - 100 - 300 });
    await asClient(() => settler.release(other));
    expect(await remainingOf(table, clock.now, check)).toEqual({ tpm: 1_900 });
  });

  it("applies a refused acquire's give-back with spills once when its answer is lost", async () => {
    const clock = manualClock();
    const a = scope('lost-give-back-a', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const b = scope('lost-give-back-b', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
    ]);
    const other = table.limiter({ clock: clock.now });
    await grow(other.engine, a.key, 2);
    await leaseOf(other, [b], 2_000);
    let armed = true;
    let lost = 0;
    const errors: unknown[] = [];
    const inner = new HookedStore(table.store, undefined, async (update, result) => {
      const charges = update.set.some((x) => x.attr === 'b_tpm' && 'add' in x && x.add > 0n);
      const idle = update.set.some((x) => x.attr === 'b_tpm' && 'value' in x);
      if (armed && result.ok && update.key.pk === a.key.pk && (charges || idle)) {
        armed = false;
        await grow(other.engine, a.key, 4);
      }
    });
    const store = new LosingStore(inner, (writes, result) => {
      const spills = writes.filter((w) => w.key.pk === a.key.pk).length > 1;
      if (result.ok && spills && lost === 0) {
        lost++;
        return true;
      }
      return false;
    });
    const caller = new Limiter({
      store,
      clock: clock.now,
      onBackgroundError: (e) => errors.push(e),
    });
    const r = await asClient(() => caller.acquire({ checks: [a, b], usage: { tokens: 1_000 } }));
    expect(r.allowed).toBe(false);
    await caller.engine.idle();
    expect(armed).toBe(false);
    expect(lost).toBe(1);
    expect(await remainingOf(table, clock.now, a)).toEqual({ tpm: 2_000 });
    expect(errors).toEqual([]);
  });
});

describe('refunds after a split, on mixed limits', () => {
  it('leaves a bucket, a quota and a shadow bucket full again once the leases are cancelled', async () => {
    const clock = manualClock();
    const check = scope('mixed', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
      { name: 'daily', metric: 'tokens', limit: 5_000, window: 'day' },
      {
        name: 'shadow',
        metric: 'tokens',
        limit: 60_000,
        per: 'minute',
        burst: 1_600,
        mode: 'shadow',
      },
    ]);
    const taker = table.limiter({ clock: clock.now });
    const ids = [await leaseOf(taker, [check], 1_200), await leaseOf(taker, [check], 700)];
    await grow(taker.engine, check.key, 4);
    const settlers = [1, 2].map(() => table.limiter({ clock: clock.now }));
    await Promise.all(ids.map((id, i) => asClient(() => (settlers[i] as Limiter).release(id))));
    // The shadow bucket read as if enforced (available names no shadow limit).
    const seen = scope('mixed', [
      { name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute', burst: 2_000 },
      { name: 'daily', metric: 'tokens', limit: 5_000, window: 'day' },
      { name: 'shadow', metric: 'tokens', limit: 60_000, per: 'minute', burst: 1_600 },
    ]);
    expect(await remainingOf(table, clock.now, seen)).toEqual({
      tpm: 2_000,
      daily: 5_000,
      shadow: 1_600,
    });
  });
});

describe('a give-back after a split the give-back has read past', () => {
  it('gives back all a refused acquire took when a split lands between its read and its write', async () => {
    const { clock, a, b, other, charges } = await refusedOnB('give-back-split');
    // The call takes 1,000 from a shard of a and is refused by b; right after its charge lands, a
    // split to 4 moves 500 of it away; once the give-back has read the shards and sends its
    // transaction with the spill, a split to 8 has moved it again.
    let charged = true;
    let spilled = true;
    const store = new HookedStore(
      table.store,
      undefined,
      async (update, result) => {
        if (charged && result.ok && charges(update)) {
          charged = false;
          await grow(other.engine, a.key, 4);
        }
      },
      async (writes) => {
        if (!spilled || writes.filter((w) => w.key.pk === a.key.pk).length < 2) return;
        spilled = false;
        await grow(other.engine, a.key, 8);
      },
    );
    const errors: unknown[] = [];
    const caller = new Limiter({
      store,
      clock: clock.now,
      onBackgroundError: (e) => errors.push(e),
    });
    const r = await asClient(() => caller.acquire({ checks: [a, b], usage: { tokens: 1_000 } }));
    expect(r.allowed).toBe(false);
    await caller.engine.idle();
    expect([charged, spilled]).toEqual([false, false]);
    expect(errors).toEqual([]); // nothing reported: the give-back says it gave back all
    expect(await remainingOf(table, clock.now, a)).toEqual({ tpm: 2_000 });
  });
});
