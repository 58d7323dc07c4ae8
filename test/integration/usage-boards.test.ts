/**
 * Top-entities boards against the truth: settlements counted before their acquires (records on
 * the lease item and on the limit's item, as from two shards: the lease item's record adds a
 * negative difference first), an entity let go that comes back, racing readers, and every
 * shard's reader writing one period's boards at once. An answer that says it is exact is exact;
 * one that is not stays within its bound.
 */
import { itemKeys, parseLimits, topEntities, UsageAggregator, usageHistory } from '@sluice/core';
import { BOARD_BYTES, boardsFor, type ItemChange } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { streamed } from '../support/streams.js';
import { freshTable, type TestTable } from '../support/table.js';

const check = (entity: string) => ({
  scope: 'entity' as const,
  key: itemKeys.entityBucket(entity, 'm'),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 100_000_000, per: 'minute' }]),
});
const ctx = (entity: string) => ({ resource: 'm', scopes: [{ entity, timezone: 'UTC' }] });

const today = () => new Date().toISOString().slice(0, 10);
/** The board item (day) an entity lands on today. */
const boardOfEntity = (entity: string) => boardsFor(entity, 'UTC', Date.now())[0]?.key;
const sameBoard = (a: string, b: string) =>
  JSON.stringify(boardOfEntity(a)) === JSON.stringify(boardOfEntity(b));

/** `count` filler names of equal length on the same board item as `victim`. */
function fillersBeside(victim: string, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const name = `filler-${String(i).padStart(5, '0')}`;
    if (sameBoard(name, victim)) out.push(name);
  }
  return out;
}

async function acquireAll(table: TestTable, names: readonly string[], tokens: number) {
  const limiter = table.limiter();
  for (let i = 0; i < names.length; i += 20)
    await Promise.all(
      names.slice(i, i + 20).map(async (e) => {
        const r = await limiter.acquire({ checks: [check(e)], usage: { tokens }, context: ctx(e) });
        if (!r.allowed) throw new Error('refused');
      }),
    );
}

const isLease = (c: ItemChange) => c.key.pk.startsWith('lease#');
const isOf = (entity: string) => (c: ItemChange) => c.key.pk === `entity#${entity}`;

async function truthOf(table: TestTable, entity: string) {
  const rows = await usageHistory(table.store, {
    entity,
    granularity: 'day',
    fromMs: Date.now() - 2 * 86_400_000,
    toMs: Date.now() + 86_400_000,
  });
  return {
    tokens: rows.reduce((n, r) => n + (r.usage.tokens ?? 0), 0),
    leases: rows.reduce((n, r) => n + r.leases, 0),
  };
}

/** Today's top `limit` by tokens. */
const topByTokens = (table: TestTable, limit = 10) =>
  topEntities(table.store, { period: 'day', date: today(), metric: 'tokens', by: 'usage', limit });

/**
 * Counts a table's stream with the lease items' records first (the settlements), then everyone
 * else's, then `victim`'s acquire (records on two items, as two shards may deliver them), and
 * checks that whatever today's top says of it is within the answer's bound of its history.
 */
async function settledFirst(
  table: TestTable,
  victim: string,
  truth: { tokens: number; leases: number },
) {
  const changes = await streamed(table);
  const aggregator = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
  await aggregator.apply(changes.filter(isLease));
  await aggregator.apply(changes.filter((c) => !isLease(c) && !isOf(victim)(c)));
  await aggregator.apply(changes.filter(isOf(victim)));
  expect(await truthOf(table, victim)).toEqual(truth); // history is right
  const top = await topByTokens(table);
  const listed = top.items.find((e) => e.entity === victim);
  expect(Math.abs((listed?.usage.tokens ?? 0) - truth.tokens)).toBeLessThanOrEqual(top.errorBound);
}

describe('top-entities boards', () => {
  it('never lists a lease released unused at its estimate when its settlement was counted first', async () => {
    const table = await freshTable('u30-boards-a');
    // Size the victim's name so the board just fits its positive entry and the fillers, but not
    // its negative one (a lease released unused: every metric of the estimate negated).
    const fillerSize =
      JSON.stringify(['filler-00000', { tokens: 1, requests: 1 }, 1, 0]).length + 1;
    const n = Math.floor(BOARD_BYTES / fillerSize) - 1;
    const room = BOARD_BYTES - n * fillerSize;
    const positive = (name: string) =>
      JSON.stringify([name, { tokens: 1000, requests: 1 }, 1, 0]).length + 1;
    let victim = '';
    for (let len = 4; len < 120; len++) {
      const name = `v${'x'.repeat(len - 1)}`;
      if (positive(name) === room) {
        victim = name;
        break;
      }
    }
    expect(victim).not.toBe('');
    const fillers = fillersBeside(victim, n);

    // In the table: the fillers' acquires, then the victim's acquire and its release unused.
    await acquireAll(table, fillers, 1);
    const limiter = table.limiter();
    const lease = await limiter.acquire({
      checks: [check(victim)],
      usage: { tokens: 1000 },
      context: ctx(victim),
    });
    if (!lease.allowed) throw new Error('refused');
    await limiter.release(lease.leaseId); // given back unused: counts nothing

    await settledFirst(table, victim, { tokens: 0, leases: 0 });
  });

  it('keeps a lease settled below its estimate within the bound when its settlement was counted first', async () => {
    const table = await freshTable('u30-boards-b');
    const victim = 'victim-settled-low';
    const fillers = fillersBeside(victim, 150); // far more than a board holds
    await acquireAll(table, fillers, 1);
    const limiter = table.limiter();
    const lease = await limiter.acquire({
      checks: [check(victim)],
      usage: { tokens: 100 },
      context: ctx(victim),
    });
    if (!lease.allowed) throw new Error('refused');
    await limiter.release(lease.leaseId, { tokens: 10 });

    await settledFirst(table, victim, { tokens: 10, leases: 1 });
  });

  it('is not exact when an entity let go that came back may outrank the top', async () => {
    const table = await freshTable('u30-boards-c');
    const back = 'zz-back';
    let top1 = 'a-top';
    for (let i = 0; !sameBoard(top1, back); i++) top1 = `a-top-${i}`;
    const fillerSize =
      JSON.stringify(['filler-00000', { tokens: 60, requests: 1 }, 1, 0]).length + 1;
    const topSize = JSON.stringify([top1, { tokens: 100, requests: 1 }, 1, 0]).length + 1;
    const n = Math.floor((BOARD_BYTES - topSize) / fillerSize);
    const fillers = fillersBeside(back, n);
    const limiter = table.limiter();
    const one = async (e: string, tokens: number) => {
      const r = await limiter.acquire({ checks: [check(e)], usage: { tokens }, context: ctx(e) });
      if (!r.allowed) throw new Error('refused');
    };
    // Batch 1: `a-top` (100), on a board with room.
    await one(top1, 100);
    const b1 = await streamed(table);
    // Batch 2: fillers (60 each) and `back` (50): the board overflows by `back` alone.
    await acquireAll(table, fillers, 60);
    await one(back, 50);
    const b2 = (await streamed(table)).slice(b1.length);
    // Batch 3: `back` again (61): in truth 111, more than a-top's 100.
    await one(back, 61);
    const b3 = (await streamed(table)).slice(b1.length + b2.length);

    const aggregator = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    for (const batch of [b1, b2, b3]) await aggregator.apply(batch); // in stream order

    expect(await truthOf(table, back)).toEqual({ tokens: 111, leases: 2 });
    expect(await truthOf(table, top1)).toEqual({ tokens: 100, leases: 1 });
    const top = await topByTokens(table, 1);
    // Exact would mean: this is the top entity. Otherwise 111 must be within last listed + bound.
    const last = top.items.at(-1)?.usage.tokens ?? 0;
    if (top.exact) expect(top.items.map((e) => e.entity)).toEqual([back]);
    else expect(111).toBeLessThanOrEqual(last + top.errorBound);
  });

  it('holds its bounds with racing readers, many entities and settlements below estimates', async () => {
    const table = await freshTable('u30-boards-d');
    const limiter = table.limiter();
    const truth = new Map<string, number>();
    const names = Array.from({ length: 260 }, (_, i) => `tenant-${String(i).padStart(3, '0')}`);
    const rnd = (n: number) => Math.floor(Math.random() * n);
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < names.length; i += 26)
        await Promise.all(
          names.slice(i, i + 26).map(async (e) => {
            if (Math.random() < 0.4) return;
            const est = 1 + rnd(1000);
            const r = await limiter.acquire({
              checks: [check(e)],
              usage: { tokens: est },
              context: ctx(e),
            });
            if (!r.allowed) throw new Error('refused');
            const fate = rnd(4);
            let final = est;
            if (fate === 1) {
              final = rnd(est);
              await limiter.release(r.leaseId, { tokens: final });
            } else if (fate === 2) {
              final = 0;
              await limiter.release(r.leaseId);
            }
            truth.set(e, (truth.get(e) ?? 0) + final);
          }),
        );
    const changes = await streamed(table);
    const reader = async (size: number) => {
      const agg = new UsageAggregator({ store: table.store, alertSettleMs: 0, maxAttempts: 64 });
      for (let i = 0; i < changes.length; i += size) await agg.apply(changes.slice(i, i + size));
    };
    await Promise.all([reader(13), reader(29), reader(50), reader(changes.length)]);
    const problems: string[] = [];
    for (const limit of [1, 2, 3, 5, 10, 20, 40]) {
      const top = await topByTokens(table, limit);
      const listed = new Set(top.items.map((e) => e.entity));
      const last = top.items.at(-1)?.usage.tokens ?? 0;
      for (const e of top.items) {
        const real = truth.get(e.entity) ?? 0;
        if (Math.abs((e.usage.tokens ?? 0) - real) > top.errorBound)
          problems.push(
            `limit ${limit}: ${e.entity} shown ${e.usage.tokens}, truth ${real}, bound ${top.errorBound}, exact ${top.exact}`,
          );
      }
      for (const [entity, real] of truth) {
        if (listed.has(entity)) continue;
        const ceiling = top.items.length === limit ? last + top.errorBound : top.errorBound;
        if (real > ceiling)
          problems.push(
            `limit ${limit}: unlisted ${entity} has ${real} > ${ceiling} (exact ${top.exact})`,
          );
      }
    }
    expect(problems).toEqual([]);
  });

  it('takes every shard’s reader at once (default attempts) without failing a batch', async () => {
    const table = await freshTable('u30-boards-e');
    const names = Array.from({ length: 240 }, (_, i) => `t-${String(i).padStart(3, '0')}`);
    await acquireAll(table, names, 10);
    await acquireAll(table, names, 10);
    const changes = await streamed(table);
    // As if the table's stream had 12 shards (records of one item stay in one shard, in order).
    const SHARDS = 12;
    const byShard = Array.from({ length: SHARDS }, () => [] as ItemChange[]);
    for (const c of changes) {
      if (!c.position) continue;
      const i = [...c.key.pk].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % SHARDS, 0);
      byShard[i]?.push({ ...c, position: { ...c.position, shard: `shardId-u30-${i}` } });
    }
    const failures: string[] = [];
    await Promise.all(
      byShard.map(async (records) => {
        const agg = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
        for (let i = 0; i < records.length; i += 5) {
          // As Lambda does: a failed batch is delivered again until it is counted.
          for (let attempt = 0; ; attempt++) {
            try {
              await agg.apply(records.slice(i, i + 5));
              break;
            } catch (e) {
              failures.push(String(e));
              if (attempt > 20) throw e;
            }
          }
        }
      }),
    );
    // Counted right in the end (each entity 20 tokens, exact):
    const top = await topEntities(table.store, {
      period: 'day',
      date: today(),
      metric: 'tokens',
      by: 'usage',
      limit: 3,
    });
    expect(top.items.map((e) => e.usage.tokens)).toEqual([20, 20, 20]);
    expect(failures).toEqual([]);
  });
});
