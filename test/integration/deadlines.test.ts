/**
 * Decisions bounded by their deadline, and writes whose outcome is unknown, against DynamoDB
 * Local: a store that stalls (as a paused DynamoDB does), answers lost after a write was applied,
 * and contention that outlasts the attempts. Nothing may stay charged for a call that was not
 * admitted, and nothing may be given back that was not taken.
 */
import {
  DeadlineExceededError,
  type ItemKey,
  Limiter,
  StoreUnavailableError,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import { bucketAttributes, type ItemUpdate } from '@sluice/core/internal';
import { beforeEach, describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { check, remaining, tpm } from '../support/limits.js';

import { streamed } from '../support/streams.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('deadlines');

const same = (a: ItemKey, b: ItemKey) => a.pk === b.pk && a.sk === b.sk;
const consuming = (update: ItemUpdate, key: ItemKey) => same(update.key, key);

/** An answer lost after the write reached the table (a dropped connection). */
const lost = () => new StoreUnavailableError('DynamoDB unavailable: socket hang up');

describe('an acquire whose deadline passes while the store stalls', () => {
  it('answers unavailable at once, and gives back its write when it lands after the answer', async () => {
    const clock = manualClock();
    const [fast, slow] = [check([tpm(1_000)], 'resource'), check([tpm(1_000)], 'entity')];
    const stall = holdPoint();
    let stalled = false;
    const store = new HookedStore(table.store, async (update) => {
      if (!stalled && consuming(update, slow.key)) {
        stalled = true;
        await stall.arrive();
      }
    });
    const limiter = new Limiter({ store, clock: clock.now });
    const deadline = new AbortController();

    const acquiring = limiter.acquire({
      checks: [fast, slow],
      usage: { tokens: 100 },
      signal: deadline.signal,
    });
    await stall.reached;
    deadline.abort();
    await expect(acquiring).rejects.toBeInstanceOf(DeadlineExceededError);
    stall.release(); // the store comes back: the stalled write lands after the answer
    await limiter.engine.idle();

    expect(await remaining(limiter, fast, slow)).toEqual([1_000, 1_000]);
  });

  it('writes nothing once its deadline has passed before the first write', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const c = check([tpm(1_000)], 'entity');
    const deadline = new AbortController();
    deadline.abort();

    await expect(
      limiter.acquire({ checks: [c], usage: { tokens: 1 }, signal: deadline.signal }),
    ).rejects.toBeInstanceOf(DeadlineExceededError);

    expect(await table.store.get(c.key)).toBeUndefined();
  });
});

describe('a write whose answer was lost after it was applied', () => {
  it('is given back once the item says it was applied', async () => {
    const clock = manualClock();
    const [shared, own] = [check([tpm(1_000)], 'resource'), check([tpm(1_000)], 'entity')];
    let dropped = false;
    const store = new HookedStore(table.store, undefined, async (update) => {
      if (!dropped && consuming(update, own.key)) {
        dropped = true;
        throw lost();
      }
    });
    const limiter = new Limiter({ store, clock: clock.now });

    await expect(
      limiter.acquire({ checks: [shared, own], usage: { tokens: 100 } }),
    ).rejects.toBeInstanceOf(StoreUnavailableError);
    await limiter.engine.idle();

    expect(await remaining(limiter, shared, own)).toEqual([1_000, 1_000]);
  });

  it('charges nothing, and reports nothing, when the item shows it was never applied', async () => {
    const clock = manualClock();
    const [shared, own] = [check([tpm(1_000)], 'resource'), check([tpm(1_000)], 'entity')];
    const reported: unknown[] = [];
    let failed = false;
    // A server error before the write reached the table (a proxy's 500): its outcome is unknown.
    const store = new HookedStore(table.store, async (update) => {
      if (!failed && consuming(update, own.key)) {
        failed = true;
        throw lost();
      }
    });
    const limiter = new Limiter({
      store,
      clock: clock.now,
      onBackgroundError: (error) => reported.push(error),
    });

    await expect(
      limiter.acquire({ checks: [shared, own], usage: { tokens: 100 } }),
    ).rejects.toBeInstanceOf(StoreUnavailableError);
    await limiter.engine.idle();

    expect(await remaining(limiter, shared, own)).toEqual([1_000, 1_000]);
    expect(reported).toEqual([]);
  });

  it('sends a give-back again when its answer was lost and the item shows it never applied', async () => {
    const clock = manualClock();
    const [full, own] = [check([tpm(100)], 'resource'), check([tpm(1_000)], 'entity')];
    const other = table.limiter({ clock: clock.now });
    await other.acquire({ checks: [full], usage: { tokens: 100 } }); // refuses the next call
    let givingBack = false;
    const store = new HookedStore(table.store, async (update) => {
      // The first give-back of `own` fails before reaching the table.
      const refund = update.set.some((a) => 'add' in a && a.add < 0n);
      if (!givingBack && consuming(update, own.key) && refund) {
        givingBack = true;
        throw lost();
      }
    });
    const limiter = new Limiter({ store, clock: clock.now, combiner: undefined });

    const result = await limiter.acquire({ checks: [own, full], usage: { tokens: 100 } });
    await limiter.engine.idle();

    expect(result.allowed).toBe(false);
    expect(givingBack).toBe(true);
    expect(await remaining(limiter, own)).toEqual([1_000]);
  });

  for (const [following, kept] of [
    [1, false],
    [4, true],
  ] as const) {
    it(`is ${kept ? 'kept charged, and reported,' : 'given back'} when ${following} other write(s) followed it before the item was read`, async () => {
      const clock = manualClock();
      const own = check([tpm(1_000)], 'entity');
      const other = table.limiter({ clock: clock.now });
      const reported: unknown[] = [];
      let dropped = false;
      const store = new HookedStore(table.store, undefined, async (update) => {
        if (!dropped && consuming(update, own.key)) {
          dropped = true;
          for (let i = 0; i < following; i++)
            await other.acquire({ checks: [own], usage: { tokens: 10 } }); // land in between
          throw lost();
        }
      });
      const limiter = new Limiter({
        store,
        clock: clock.now,
        onBackgroundError: (error) => reported.push(error),
      });

      await expect(
        limiter.acquire({ checks: [own], usage: { tokens: 100 } }),
      ).rejects.toBeInstanceOf(StoreUnavailableError);
      await limiter.engine.idle();

      // The item lists its last four writes: past them it cannot tell, and nothing is given back
      // blindly (a refund of what may not have been taken would admit more than the limit).
      const others = 10 * following;
      expect(await remaining(limiter, own)).toEqual([1_000 - others - (kept ? 100 : 0)]);
      expect(reported).toHaveLength(kept ? 1 : 0);
    });
  }
});

describe('a refused call whose first write the item cannot place', () => {
  let [own, full] = [check(), check()];
  beforeEach(() => {
    [own, full] = [check([tpm(1_000)], 'entity'), check([tpm(100)], 'resource')];
  });

  /**
   * Refuses a call of 100 tokens for `entity` (`full` has no room), `own` first: `lose` runs at
   * its first write to `own`, before the write (`before`) or after it applied (`after`), and
   * throws to lose the answer; `also` runs at each later write of `own`.
   */
  async function refusedCall(
    entity: string,
    lose: { readonly when: 'before' | 'after'; readonly others: number },
    also: (update: ItemUpdate) => Promise<void> = async () => {},
    clock = manualClock(),
  ) {
    const other = table.limiter({ clock: clock.now });
    await other.acquire({ checks: [full], usage: { tokens: 100 } }); // refuses the call below
    let dropped = false;
    const hook = (when: 'before' | 'after') => async (update: ItemUpdate) => {
      if (!consuming(update, own.key)) return;
      if (dropped) return when === 'after' ? also(update) : undefined;
      if (when !== lose.when) return;
      dropped = true;
      for (let i = 0; i < lose.others; i++)
        await other.acquire({ checks: [own], usage: { tokens: 10 } });
      throw lost();
    };
    const store = new HookedStore(table.store, hook('before'), hook('after'));
    const limiter = new Limiter({ store, clock: clock.now, combiner: undefined });
    const context = { resource: 'gpt-4o', scopes: [{ entity, timezone: 'UTC' }] };
    const result = await limiter.acquire({ checks: [own, full], usage: { tokens: 100 }, context });
    await limiter.engine.idle();
    return { result, clock, limiter };
  }

  /**
   * `entity`'s usage history once a fresh aggregator has counted the stream: in one batch, or in
   * two split after the record that names `entity` first (where a lease's event and its
   * cancellation fall in different batches).
   */
  async function historyOf(entity: string, split: boolean, nowMs: number) {
    const changes = await streamed(table);
    const aggregator = new UsageAggregator({ store: table.store });
    const first = changes.findIndex((c) => String(c.newImage?.ev ?? '').includes(entity));
    const at = split && first >= 0 ? first + 1 : changes.length;
    await aggregator.apply(changes.slice(0, at));
    await aggregator.apply(changes.slice(at));
    return usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: nowMs - 86_400_000,
      toMs: nowMs + 86_400_000,
    });
  }

  for (const split of [false, true]) {
    const batches = split ? 'its event and cancellation counted in two batches' : 'one batch';
    it(`is never counted in usage history when it applied, whatever stays charged (${batches})`, async () => {
      // `own` takes the call (and its usage event), its answer is lost and four other writes
      // follow before the item is read: the item cannot tell, and the charge stays.
      const entity = `applied-${split}`;
      const { result, clock, limiter } = await refusedCall(entity, { when: 'after', others: 4 });

      expect(result).toMatchObject({ allowed: false, code: 'rate_limited' });
      expect(await remaining(limiter, own)).toEqual([860]); // kept: 100, and the others' 40
      expect(await historyOf(entity, split, clock.now())).toEqual([]);
    });

    it(`takes nothing from usage history when it never applied, though the item cannot tell (${batches})`, async () => {
      // The answer is lost before the write reaches the table, and four other writes follow: the
      // cancellation goes alone, naming an estimate usage history never counted.
      const entity = `never-applied-${split}`;
      const { result, clock, limiter } = await refusedCall(entity, { when: 'before', others: 4 });
      await take(entity, 30, clock.now);

      expect(result).toMatchObject({ allowed: false, code: 'rate_limited' });
      expect(await remaining(limiter, own)).toEqual([1_000 - 40 - 30]);
      expect(tokensOf(await historyOf(entity, split, clock.now()))).toEqual([30]);
    });
  }

  it('counts its cancellation once when the cancellation written alone lands twice', async () => {
    // As when it applied, and the cancellation's own answer is lost once after it applied;
    // another call's usage event lands on the item before it is sent again.
    const entity = 'cancelled-twice';
    let cancellationLost = false;
    const clock = manualClock();
    const { result } = await refusedCall(
      entity,
      { when: 'after', others: 4 },
      async (update) => {
        const alone = update.set.some((a) => String('value' in a ? a.value : '').includes(',-1,'));
        if (cancellationLost || !alone) return;
        cancellationLost = true;
        await take('someone-else', 10, clock.now);
        throw lost();
      },
      clock,
    );
    await take(entity, 30, clock.now);
    const cancellations = (await streamed(table)).filter(
      (c) =>
        String(c.newImage?.ev ?? '').includes(`"${entity}"`) &&
        String(c.newImage?.ev).includes(',-1,'),
    );

    expect(result).toMatchObject({ allowed: false });
    expect(cancellations).toHaveLength(2);
    expect(tokensOf(await historyOf(entity, false, clock.now()))).toEqual([30]);
  });

  /** An admitted call of `tokens` on `own` for `entity`, with its usage event. */
  async function take(entity: string, tokens: number, now: () => number) {
    const context = { resource: 'gpt-4o', scopes: [{ entity, timezone: 'UTC' }] };
    const limiter = table.limiter({ clock: now });
    const r = await limiter.acquire({ checks: [own], usage: { tokens }, context });
    expect(r.allowed).toBe(true);
  }

  const tokensOf = (rows: readonly { readonly usage: { readonly tokens?: number } }[]) =>
    rows.map((r) => r.usage.tokens);
});

describe('an acquire that runs out of attempts on contention', () => {
  it('refuses nothing it cannot name: with room left it is unavailable, and nothing stays charged', async () => {
    const clock = manualClock();
    const [contended, own] = [check([tpm(600)], 'resource'), check([tpm(1_000)], 'entity')];
    const { L, P } = { L: 600n, P: 60_000_000_000n }; // 600 a minute: x = TAT·L, a token is P
    const nowX = BigInt(clock.now()) * 1_000_000n * L;
    const tat = bucketAttributes.tat('tpm');
    let busy = false;
    // Before each write of ours, another writer flips the bucket between idle and busy: every
    // branch guessed from the last state is wrong by the time it lands, though room is left.
    const store = new HookedStore(table.store, async (update) => {
      if (!consuming(update, contended.key) || update.set.every((a) => a.attr !== tat)) return;
      busy = !busy;
      await table.store.update({
        key: contended.key,
        set: [
          { attr: tat, value: busy ? nowX + 10n * P : nowX - 1n },
          { attr: bucketAttributes.scale('tpm'), value: '600/60/600' },
        ],
      });
    });
    const limiter = new Limiter({ store, clock: clock.now, combiner: undefined });

    const result = limiter.acquire({ checks: [own, contended], usage: { tokens: 100 } });

    await expect(result).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await remaining(limiter, own)).toEqual([1_000]);
  });

  it('names the full limit and a real retry time when the last state seen is full', async () => {
    const clock = manualClock();
    const contended = check([tpm(600)], 'resource');
    const tat = bucketAttributes.tat('tpm');
    const nowX = BigInt(clock.now()) * 1_000_000n * 600n;
    const P = 60_000_000_000n;
    let writes = 0;
    // Another writer fills the bucket just before our last attempt lands.
    const store = new HookedStore(table.store, async (update) => {
      if (!consuming(update, contended.key) || update.set.every((a) => a.attr !== tat)) return;
      writes++;
      const full = writes >= 4;
      await table.store.update({
        key: contended.key,
        set: [
          { attr: tat, value: full ? nowX + 600n * P : writes % 2 ? nowX + 10n * P : nowX - 1n },
          { attr: bucketAttributes.scale('tpm'), value: '600/60/600' },
        ],
      });
    });
    const limiter = new Limiter({ store, clock: clock.now, combiner: undefined });

    const result = await limiter.acquire({ checks: [contended], usage: { tokens: 100 } });

    expect(result).toMatchObject({ allowed: false, code: 'rate_limited' });
    expect(result.allowed ? [] : result.violations.map((v) => v.name)).toEqual(['tpm']);
    expect(result.allowed ? 0 : result.retryAfterMs).toBe(10_000);
  });
});

describe('a settlement whose deadline passes while the store stalls', () => {
  it('answers unavailable, and the same adjust again applies once when the store is back', async () => {
    const clock = manualClock();
    const c = check([tpm(1_000)], 'entity');
    const stall = holdPoint();
    let stalling = false;
    const store = new HookedStore(table.store, undefined, undefined, async () => {
      if (!stalling) return;
      stalling = false;
      await stall.arrive();
    });
    const limiter = new Limiter({ store, clock: clock.now });
    const acquired = await limiter.acquire({ checks: [c], usage: { tokens: 100 } });
    if (!acquired.allowed) throw new Error('expected admission');
    const deadline = new AbortController();
    stalling = true;

    const adjusting = limiter.adjust(
      acquired.leaseId,
      { tokens: 300 },
      { signal: deadline.signal },
    );
    await stall.reached;
    deadline.abort();
    await expect(adjusting).rejects.toBeInstanceOf(DeadlineExceededError);
    stall.release();
    const again = await limiter.adjust(acquired.leaseId, { tokens: 300 });

    expect(again.usage.tokens).toBe(300);
    expect(await remaining(limiter, c)).toEqual([700]);
  });
});
