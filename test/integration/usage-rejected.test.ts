/**
 * Rows DynamoDB rejects as too large. One org's hour row is grown near 400 KB (padding set by
 * hand, as thousands of custom metric names would); a batch then counts for it, for its keys and
 * for another tenant, and is delivered again.
 */
import { itemKeys, Limiter, parseLimits, UsageAggregator, usageHistory } from '@sluice/core';
import { hourRow, type ItemChange } from '@sluice/core/internal';
import { beforeAll, describe, expect, it } from 'vitest';
import { streamed } from '../support/streams.js';
import { freshTable, type TestTable } from '../support/table.js';

const T = Date.parse('2026-12-07T10:15:00Z');
let table: TestTable;
let changes: ItemChange[] = [];
const CUSTOM = (lease: number) =>
  Object.fromEntries(
    Array.from({ length: 20 }, (_, i) => [
      `cust_metric_long_name_${lease}_${String(i).padStart(2, '0')}`,
      1,
    ]),
  );

const rowKey = (entity: string) =>
  hourRow(entity, 'UTC', 'm', T, { metrics: new Map(), leases: 0n, denied: new Map() }).key;

/** Pads a row to about `target` bytes (DynamoDB's item size: names and values). */
async function pad(entity: string, target: number) {
  const key = rowKey(entity);
  const base = 'pk'.length + key.pk.length + 'sk'.length + key.sk.length + 'zpad'.length;
  await table.store.update({ key, set: [{ attr: 'zpad', value: 'a'.repeat(target - base) }] });
}

async function sum(entity: string) {
  const rows = await usageHistory(table.store, {
    entity,
    granularity: 'hour',
    fromMs: T - 3_600_000,
    toMs: T + 3_600_000,
  });
  const usage = new Map<string, number>();
  let leases = 0;
  for (const r of rows) {
    for (const [k, v] of Object.entries(r.usage)) usage.set(k, (usage.get(k) ?? 0) + v);
    leases += r.leases;
  }
  return {
    custom: [...usage.keys()].filter((k) => k.startsWith('cust')).length,
    tokens: usage.get('tokens') ?? 0,
    leases,
  };
}

beforeAll(async () => {
  table = await freshTable('u30-rejected');
  const limiter = new Limiter({ store: table.store, clock: () => T });
  const go = async (key: string, org: string, n: number) => {
    const r = await limiter.acquire({
      checks: [
        {
          scope: 'entity',
          key: itemKeys.entityBucket(key, 'm'),
          limits: parseLimits([
            { name: 'tpm', metric: 'tokens', limit: 100_000_000, per: 'minute' },
          ]),
        },
      ],
      usage: { input_tokens: 1000, output_tokens: 1000, ...CUSTOM(n) },
      context: {
        resource: 'm',
        scopes: [
          { entity: key, timezone: 'UTC' },
          { entity: org, timezone: 'UTC' },
        ],
      },
    });
    if (!r.allowed) throw new Error('refused');
  };
  await go('key-1', 'org-big', 1);
  await go('key-1', 'org-big', 2);
  await go('key-2', 'org-full', 3);
  await go('key-3', 'org-edge', 4);
  await go('key-4', 'org-fine', 5);
  changes = await streamed(table);
  const LIMIT = 400 * 1024;
  await pad('org-big', LIMIT - 700); // standard metrics fit, custom ones do not
  await pad('org-full', LIMIT - 20); // nothing fits
  await pad('org-edge', LIMIT - 170); // its marks fit, its standard metrics do not
});

describe('rows DynamoDB rejects', () => {
  it('never block other rows, and count nothing twice when delivered again', async () => {
    const agg = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    const first = await agg.apply(changes);
    // The full org's row takes nothing, the edge's its marks alone: both left out entirely.
    expect(first.setAside.map((a) => [a.row.split('\n')[0], a.left]).sort()).toEqual([
      ['usage#org-big', 'custom'],
      ['usage#org-edge', 'all'],
      ['usage#org-full', 'all'],
    ]);
    const after = {
      big: await sum('org-big'),
      full: await sum('org-full'),
      edge: await sum('org-edge'),
      fine: await sum('org-fine'),
      k1: await sum('key-1'),
      k2: await sum('key-2'),
      all: await sum('*'),
    };
    expect(after.big).toEqual({ custom: 0, tokens: 4000, leases: 2 });
    expect(after.fine).toEqual({ custom: 20, tokens: 2000, leases: 1 });
    expect(after.k1).toEqual({ custom: 40, tokens: 4000, leases: 2 });
    expect(after.all).toEqual({ custom: 100, tokens: 10000, leases: 5 });
    expect(after.k2).toEqual({ custom: 20, tokens: 2000, leases: 1 });
    await agg.apply(changes);
    await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(changes.slice(2));
    expect({ big: await sum('org-big'), k1: await sum('key-1'), all: await sum('*') }).toEqual({
      big: after.big,
      k1: after.k1,
      all: after.all,
    });
  });

  it('leave out for good what a row took only the marks of; a row that took nothing counts later', async () => {
    // The rows stop being too large (say the padding were custom metrics of an hour now over);
    // the records are delivered again.
    for (const e of ['org-full', 'org-edge'])
      await table.store.update({ key: rowKey(e), set: [], remove: ['zpad'] });
    const again = await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(
      changes,
    );
    expect(again.setAside).toEqual([]);
    expect({ full: await sum('org-full'), edge: await sum('org-edge') }).toEqual({
      full: { custom: 20, tokens: 2000, leases: 1 }, // nothing was written: counted now
      edge: { custom: 0, tokens: 0, leases: 0 }, // its marks were: what was left out stays out
    });
  });
});
