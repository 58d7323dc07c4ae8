/**
 * Retention of the roll-up's rows, hostile entity and metric names, and marks (no creation time,
 * a clock far ahead, a replay after another shard wrote the row).
 */
import {
  itemKeys,
  Limiter,
  parseLimits,
  topEntities,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import { hourRow, type ItemChange, ROLLUP_ENTITY } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { streamed } from '../support/streams.js';
import { freshTable, type TestTable } from '../support/table.js';

const check = (entity: string, resource = 'm') => ({
  scope: 'entity' as const,
  key: itemKeys.entityBucket(entity, resource),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 100_000_000, per: 'minute' }]),
});

async function lease(
  limiter: Limiter,
  scopes: string[],
  usage: Record<string, number>,
  settle?: Record<string, number> | 'unused',
) {
  const r = await limiter.acquire({
    checks: [check(scopes[0] as string)],
    usage,
    context: { resource: 'm', scopes: scopes.map((entity) => ({ entity, timezone: 'UTC' })) },
  });
  if (!r.allowed) throw new Error('refused');
  if (settle === 'unused') await limiter.release(r.leaseId);
  else if (settle) await limiter.release(r.leaseId, settle);
}

const sumOf = async (table: TestTable, entity: string) => {
  const rows = await usageHistory(table.store, {
    entity,
    granularity: 'day',
    fromMs: Date.now() - 2 * 86_400_000,
    toMs: Date.now() + 86_400_000,
  });
  const usage = new Map<string, number>();
  let leases = 0;
  for (const r of rows) {
    for (const [k, v] of Object.entries(r.usage)) usage.set(k, (usage.get(k) ?? 0) + v);
    leases += r.leases;
  }
  return { usage: Object.fromEntries(usage), leases };
};

describe('misc', () => {
  it('the roll-up rows expire as SLUICE_USAGE_RETENTION_DAYS says, like the entity rows', async () => {
    const table = await freshTable('u30-retention');
    const nowMs = Date.parse('2026-12-07T10:00:00Z');
    await lease(new Limiter({ store: table.store, clock: () => nowMs }), ['key-r'], { tokens: 5 });
    await new UsageAggregator({ store: table.store, alertSettleMs: 0, retentionDays: 7 }).apply(
      await streamed(table),
    );
    const ttlOf = async (entity: string) => {
      const { key } = hourRow(entity, 'UTC', 'm', nowMs, {
        metrics: new Map(),
        leases: 0n,
        denied: new Map(),
      });
      return (await table.store.get(key))?.ttl;
    };
    const entityTtl = await ttlOf('key-r');
    expect(entityTtl).toBeDefined();
    expect({ rollup: await ttlOf(ROLLUP_ENTITY) }).toEqual({ rollup: entityTtl });
  });

  it('counts entities and metrics named like object members (constructor, denied, leases)', async () => {
    const table = await freshTable('u30-names');
    const limiter = table.limiter();
    await lease(limiter, ['constructor', 'toString'], {
      constructor: 5,
      denied: 3,
      leases: 2,
      tokens: 10,
    });
    await lease(
      limiter,
      ['hasOwnProperty', 'toString'],
      { constructor: 7, valueof: 1, tokens: 20 },
      {
        constructor: 1,
        tokens: 4,
      },
    );
    await lease(limiter, ['valueOf', 'toString'], { constructor: 9, tokens: 30 }, 'unused');
    const agg = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    const changes = await streamed(table);
    await agg.apply(changes.filter((c) => c.key.pk.startsWith('lease#'))); // settlements first
    await agg.apply(changes.filter((c) => !c.key.pk.startsWith('lease#')));
    expect(await sumOf(table, 'constructor')).toEqual({
      usage: { constructor: 5, denied: 3, leases: 2, tokens: 10, requests: 1 },
      leases: 1,
    });
    expect(await sumOf(table, 'toString')).toEqual({
      usage: { constructor: 6, denied: 3, leases: 2, tokens: 14, requests: 2, valueof: 1 },
      leases: 2,
    });
    expect(await sumOf(table, 'valueOf')).toEqual({ usage: {}, leases: 0 });
    const date = new Date().toISOString().slice(0, 10);
    for (const metric of [
      'constructor',
      'denied',
      'leases',
      'tokens',
      'valueof',
      'toString',
      '__proto__',
    ]) {
      const top = await topEntities(table.store, {
        period: 'day',
        date,
        metric,
        by: 'usage',
        limit: 10,
      });
      const want: Record<string, number> = {
        constructor: 6,
        denied: 3,
        leases: 2,
        tokens: 14,
        valueof: 1,
      };
      const mine = top.items.find((e) => e.entity === 'toString');
      expect({
        metric,
        n: mine && Object.hasOwn(mine.usage, metric) ? mine.usage[metric] : null,
        exact: top.exact,
      }).toEqual({
        metric,
        n: Object.hasOwn(want, metric) ? want[metric] : null,
        exact: true,
      });
    }
    const denied = await topEntities(table.store, {
      period: 'day',
      date,
      metric: 'tokens',
      by: 'denied',
      limit: 10,
    });
    expect(denied.items).toEqual([]);
  });

  it('count records without a creation time once, replayed with the clock a day ahead', async () => {
    const table = await freshTable('u30-marks-a');
    await lease(table.limiter(), ['key-t', 'org-t'], { tokens: 10 }, { tokens: 7 });
    const changes = (await streamed(table)).map(
      (c): ItemChange => (c.position ? { ...c, position: { ...c.position, atMs: 0 } } : c),
    );
    const agg = new UsageAggregator({
      store: table.store,
      alertSettleMs: 0,
      clock: () => Date.now() + 30 * 3_600_000,
    });
    await agg.apply(changes);
    await agg.apply(changes);
    expect(await sumOf(table, 'org-t')).toEqual({ usage: { tokens: 7, requests: 1 }, leases: 1 });
  });

  it('count a replay within 24 h once, after another shard wrote the row', async () => {
    const table = await freshTable('u30-marks-b');
    await lease(table.limiter(), ['key-u', 'org-u'], { tokens: 10 }, { tokens: 7 });
    const changes = await streamed(table);
    const agg = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await agg.apply(changes);
    // The same records under another shard id with longer sequence numbers (a second shard).
    const other = changes.map(
      (c): ItemChange =>
        c.position
          ? {
              ...c,
              position: {
                ...c.position,
                shard: 'shardId-other',
                sequence: `9${c.position.sequence.padStart(39, '0')}`,
              },
            }
          : c,
    );
    await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(other);
    await agg.apply(changes);
    // The records of the second "shard" are other records: counted once more, no more.
    expect(await sumOf(table, 'org-u')).toEqual({ usage: { tokens: 14, requests: 2 }, leases: 2 });
  });
});

describe('records older than the stream keeps them', () => {
  it('are not counted (their marks may have been let go), and are reported', async () => {
    const table = await freshTable('u30-marks-old');
    await lease(table.limiter(), ['key-old', 'org-old'], { tokens: 10 }, { tokens: 7 });
    const changes = await streamed(table);
    // Read a day and two hours after they were written: a kept database read again from its start.
    const late = new UsageAggregator({
      store: table.store,
      alertSettleMs: 0,
      clock: () => Date.now() + 26 * 3_600_000,
    });
    const report = await late.apply(changes);
    expect(report.expired).toBeGreaterThan(0);
    expect(report.expired).toBe(report.records);
    expect(await sumOf(table, 'org-old')).toEqual({ usage: {}, leases: 0 });
  });
});
