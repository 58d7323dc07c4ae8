/**
 * Usage records whose amounts or alert budgets no engine writes (past 2^53, negative, text) are
 * left out and reported unplaced: counted, they failed or poisoned rows shared with others.
 */
import { itemKeys, UsageAggregator, usageHistory } from '@sluice/core';
import type { ItemChange } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { streamEvent } from '../support/streams.js';
import { fileTable } from '../support/table.js';

const table = fileTable('usage-odd-amounts');

const SHARD = 'shardId-00000001700000000000-zzzzzzzy';
const RESOURCE = 'gpt-4o';

/** A change of an entity's item whose `ev` attribute is `ev`, at `sequence`. */
const eventChange = (entity: string, ev: string, sequence: number, atMs: number): ItemChange =>
  streamEvent(SHARD, RESOURCE, { entity, ev, sequence, atMs });

const eventOf = (lease: string, atMs: number, entity: string, usage: unknown) =>
  JSON.stringify([lease, 0, atMs, atMs + 3_600_000, usage, [RESOURCE, [[entity]]]]);

describe('usage records no engine writes', () => {
  it('leaves out amounts no engine writes (past 2^53, negative, text), counting the rest of the batch in the roll-up too', async () => {
    const now = Date.now();
    const atMs = Date.parse('2026-02-03T10:30:00Z');
    const entity = 'amounts-neighbour';
    const hostile = [
      { tokens: 1e300 },
      { tokens: -1e300 },
      { tokens: '99999999999999999999999999999999999999999' },
      { tokens: 2 ** 60 },
      { tokens: -3 },
    ];
    const changes = [
      ...hostile.map((usage, i) =>
        eventChange(
          `amounts-${i}`,
          eventOf(`lease-h${i}`, atMs, `amounts-${i}`, usage),
          300 + i,
          now,
        ),
      ),
      eventChange(entity, eventOf('lease-good-amounts', atMs, entity, { tokens: 9 }), 400, now),
    ];

    const report = await new UsageAggregator({ store: table.store }).apply(changes);

    expect(report.unplaced).toHaveLength(hostile.length);
    expect(report.setAside).toEqual([]);
    const tokens = async (of: string) =>
      (
        await usageHistory(table.store, {
          entity: of,
          granularity: 'day',
          fromMs: atMs - 86_400_000,
          toMs: atMs + 86_400_000,
        })
      ).reduce((n, p) => n + (p.usage.tokens ?? 0), 0);
    expect(await tokens(entity)).toBe(9);
    // The deployment-wide roll-up shares its hour row with every entity's records.
    expect(await tokens('*')).toBe(9);
  });
});

describe('budget alerts on items no engine writes', () => {
  it('leaves out an alert whose budget no engine writes (past 2^53) and counts the rest of the batch', async () => {
    const now = Date.now();
    const atMs = Date.parse('2026-02-04T10:30:00Z');
    const entity = 'alert-neighbour';
    const quota = itemKeys.entityWide('huge-budget');
    const usedQuota = itemKeys.entityWide('huge-used');
    const huge = 10n ** 50n + 1n;
    const changes: ItemChange[] = [
      {
        key: quota,
        newImage: {
          ...quota,
          a_monthly: `${huge}|0.5`,
          w_monthly: BigInt(Date.parse('2026-02-01T00:00:00Z')),
          u_monthly: huge,
        },
        position: { shard: SHARD, sequence: '500', atMs: now },
      },
      {
        key: usedQuota,
        newImage: {
          ...usedQuota,
          a_monthly: '100|0.5',
          w_monthly: BigInt(Date.parse('2026-02-01T00:00:00Z')),
          u_monthly: huge,
        },
        position: { shard: SHARD, sequence: '502', atMs: now },
      },
      eventChange(entity, eventOf('lease-good-alerts', atMs, entity, { tokens: 7 }), 501, now),
    ];

    const report = await new UsageAggregator({ store: table.store }).apply(changes);

    // The budget past MAX_AMOUNT fires nothing; the huge use of a budget of 100 fires its alert.
    expect(report.alerts).toBe(1);
    const days = await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: atMs - 86_400_000,
      toMs: atMs + 86_400_000,
    });
    expect(days.reduce((n, p) => n + (p.usage.tokens ?? 0), 0)).toBe(7);
  });
});
