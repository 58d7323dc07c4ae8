/**
 * How a sharded scope splits its limits (packages/core/src/engine/shards.ts): the shares each
 * shard holds, and what an item says of its shards. The splits themselves run against a table
 * (integration tier). Internal to @sluice/core, so imported by path.
 */
import { EngineState } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { observe, thawed, throttled } from '../../packages/core/src/engine/growth.js';
import {
  counted,
  countOf,
  frozenAt,
  parentOf,
  pickShard,
  quotaShare,
  shardCondition,
  shardingOf,
  shardsAt,
  shareOf,
} from '../../packages/core/src/engine/shards.js';
import type { Store } from '../../packages/core/src/store/types.js';
import { bucket, quota } from '../support/stored.js';

const runs = (seed: number) => ({ seed, numRuns: 500 });

describe('quotaShare', () => {
  it('gives the remainder to the first shards, one each', () => {
    expect([0, 1, 2, 3].map((s) => quotaShare(10, s, 4))).toEqual([3, 3, 2, 2]);
    expect([0, 1].map((s) => quotaShare(1, s, 2))).toEqual([1, 0]);
  });

  it('splits any limit into shares that add up to it exactly, none more than one apart', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 1, max: 64 }),
        (limit, count) => {
          const shares = Array.from({ length: count }, (_, s) => quotaShare(limit, s, count));

          expect(shares.reduce((sum, n) => sum + BigInt(n), 0n)).toBe(BigInt(limit));
          expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
        },
      ),
      runs(20_260_330),
    );
  });

  it('keeps what two halves of a split hold equal to what the one held', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000_000 }),
        fc.integer({ min: 0, max: 5 }),
        fc.nat(),
        (limit, doublings, pick) => {
          const count = 2 ** doublings;
          const s = pick % count;

          const halves = quotaShare(limit, s, 2 * count) + quotaShare(limit, s + count, 2 * count);

          expect(halves).toBe(quotaShare(limit, s, count));
        },
      ),
      runs(20_260_331),
    );
  });
});

describe('shareOf', () => {
  it('leaves a whole scope’s limits as they are', () => {
    const limits = [bucket(10), quota(1_000)];

    expect(shareOf(limits, 0, 1)).toEqual(limits);
  });

  it('gives each shard its share: of a bucket 1/n, of a quota its part', () => {
    const limits = [bucket(10), quota(1_001)];

    const share = (shardIndex: number) => bucket(10, 60, 10, { share: 4, shardIndex });
    const part = (limit: number, index: number) => ({
      ...quota(limit),
      shardOf: { limit: 1_001, index, count: 4 },
    });
    expect(shareOf(limits, 0, 4)).toEqual([share(0), part(251, 0)]);
    expect(shareOf(limits, 3, 4)).toEqual([share(3), part(250, 3)]);
  });
});

describe('shardingOf', () => {
  it('asks for the most shards any limit asks for', () => {
    const limits = [
      bucket(10),
      bucket(10, 60, 10, { sharding: { shards: 2, max: 8 } }),
      { ...quota(1_000), sharding: { shards: 4, max: 4 } },
    ];

    expect(shardingOf(limits)).toEqual({ shards: 4, max: 8 });
    expect(shardingOf([bucket(10)])).toBeUndefined();
  });
});

describe('what an item says of its shards', () => {
  it('counts 1 when whole, n when split, and n while frozen to split to it', () => {
    expect(countOf(undefined)).toBe(1);
    expect(countOf({ n: 4n })).toBe(4);
    expect(countOf({ n: -8n })).toBe(8);
  });

  it('is frozen only while its count is negative, since when it says', () => {
    expect(frozenAt({ n: 4n, nf: 5n })).toBeUndefined();
    expect(frozenAt(undefined)).toBeUndefined();
    expect(frozenAt({ n: -8n, nf: 1_234n })).toBe(1_234);
    expect(frozenAt({ n: -8n })).toBe(0);
  });

  it('conditions every write on the count it was computed for', () => {
    expect(shardCondition(1)).toEqual({ absent: 'n' });
    expect(shardCondition(4)).toEqual({ attr: 'n', op: '=', value: 4n });
  });

  it('counts writes only to a scope that may still grow', () => {
    const increment = [{ attr: 'wc', base: 0n, addToExisting: 1n }];

    expect(counted({ shards: 2, max: 8 }, 4)).toEqual(increment);
    expect(counted({ shards: 2, max: 8 }, 8)).toEqual([]);
    expect(counted(undefined, 1)).toEqual([]);
  });

  it('charges at the count last seen of the item, else the most known of its scope', () => {
    const unreachable = () => {
      throw new Error('the store is not asked');
    };
    const store: Store = { update: unreachable, transact: unreachable, get: unreachable };
    const engine = new EngineState({ store });
    const base = { pk: 'resource#m', sk: 'm' };
    const shard3 = { pk: base.pk, sk: 'm#3' };
    engine.remember(base, { n: 4n });

    expect(shardsAt(engine, shard3)).toBe(4); // not seen itself: its scope's count
    engine.remember(shard3, { n: 2n });
    expect(shardsAt(engine, shard3)).toBe(2);
  });
});

describe('parentOf', () => {
  it('names the shard a split of it came from', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 12].map(parentOf)).toEqual([0, 0, 1, 0, 1, 2, 3, 4]);
  });
});

describe('pickShard', () => {
  it('picks shard 0 of a whole scope', () => {
    expect(pickShard(1)).toBe(0);
  });

  it('picks a shard not yet tried while there is one, and any once all were', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 2, max: 64 })
          .chain((count) =>
            fc.tuple(fc.constant(count), fc.uniqueArray(fc.nat(count - 1), { maxLength: count })),
          ),
        ([count, tried]) => {
          const picked = pickShard(count, new Set(tried));

          expect(picked).toBeGreaterThanOrEqual(0);
          expect(picked).toBeLessThan(count);
          if (tried.length < count) expect(tried).not.toContain(picked);
        },
      ),
      runs(20_260_332),
    );
  });
});

describe('when a scope grows', () => {
  const base = { pk: 'resource#m', sk: 'm' };
  const sharding = { shards: 1, max: 4 };

  /**
   * An engine at `nowMs` whose store is out of reach: a growth it starts fails at its first read
   * and is reported, which is how these tests see that one started.
   */
  function engineAt(clock: { nowMs: number }) {
    const offline = async (): Promise<never> => {
      throw new Error('offline');
    };
    const store: Store = { update: offline, transact: offline, get: offline };
    const growths: unknown[] = [];
    const engine = new EngineState({
      store,
      clock: () => clock.nowMs,
      onBackgroundError: (error) => growths.push(error),
    });
    return { engine, growths };
  }

  it('grows a scope with fewer shards than its limits ask at once', async () => {
    const { engine, growths } = engineAt({ nowMs: 0 });

    observe(engine, base, {}, { shards: 2, max: 4 });
    await engine.growth();

    expect(growths).toHaveLength(1);
  });

  it('grows a hot item once its writes, seen a second apart, pass the rate', async () => {
    const clock = { nowMs: 0 };
    const { engine, growths } = engineAt(clock);
    const hot = engine.tuning.shardGrowWritesPerSecond;

    observe(engine, base, { wc: 0n }, sharding); // first sighting
    clock.nowMs = 500;
    observe(engine, base, { wc: BigInt(hot) }, sharding); // too soon to judge
    clock.nowMs = 1_000;
    observe(engine, base, { wc: BigInt(hot - 1) }, sharding); // not hot enough
    await engine.growth();
    const before = growths.length;
    clock.nowMs = 2_000;
    observe(engine, base, { wc: BigInt(2 * hot) }, sharding);
    await engine.growth();

    expect([before, growths.length]).toEqual([0, 1]);
  });

  it('leaves alone an item with no counter, one at its most, and an unsharded scope', async () => {
    const { engine, growths } = engineAt({ nowMs: 0 });

    observe(engine, base, {}, sharding);
    observe(engine, base, { n: 4n, wc: 1_000_000n }, sharding);
    observe(engine, base, { wc: 1n }, undefined);
    throttled(engine, base, undefined);
    await engine.growth();

    expect(growths).toHaveLength(0);
  });

  it('grows a throttled item while it may', async () => {
    const { engine, growths } = engineAt({ nowMs: 0 });

    throttled(engine, base, sharding);
    await engine.growth();

    expect(growths).toHaveLength(1);
  });

  it('lets a write to an item that is not frozen go on at once', async () => {
    const { engine, growths } = engineAt({ nowMs: 0 });

    await thawed(engine, base, { n: 2n });

    expect(growths).toHaveLength(0);
  });
});
