/**
 * Usage history in half-hour zones and on DST days: hours of the local day, days and months summed
 * from hour rows, boards per local day, and the deployment-wide roll-up (UTC). Leases are acquired
 * at chosen instants (the limiter's clock) and counted from the real stream.
 */
import {
  itemKeys,
  Limiter,
  parseLimits,
  topEntities,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import type { UsageGranularity } from '@sluice/core/internal';
import { beforeAll, describe, expect, it } from 'vitest';
import { streamed } from '../support/streams.js';
import { freshTable, type TestTable } from '../support/table.js';

let table: TestTable;
const at = (iso: string) => Date.parse(iso);

/** entity, zone, instant, tokens */
const LEASES: [string, string, string, number][] = [
  // Kolkata (+05:30): the local day turns at 18:30Z.
  ['kol', 'Asia/Kolkata', '2026-03-10T18:29:59Z', 1],
  ['kol', 'Asia/Kolkata', '2026-03-10T18:30:00Z', 2],
  ['kol', 'Asia/Kolkata', '2026-03-31T18:29:00Z', 4], // 23:59 on 31 March local
  ['kol', 'Asia/Kolkata', '2026-03-31T18:31:00Z', 8], // 1 April local
  // New York, spring forward (8 March 2026: a 23-hour day, 05:00Z to 04:00Z)
  ['ny', 'America/New_York', '2026-03-09T03:59:59Z', 16],
  ['ny', 'America/New_York', '2026-03-09T04:00:00Z', 32],
  // New York, fall back (1 November 2026: a 25-hour day, 04:00Z to 05:00Z)
  ['ny', 'America/New_York', '2026-11-02T04:30:00Z', 64],
  ['ny', 'America/New_York', '2026-11-02T05:00:00Z', 128],
  // Lord Howe, DST ends 5 April 2026 02:00 (+11 -> +10:30): a 24.5-hour day, 13:00Z to 13:30Z
  ['lhi', 'Australia/Lord_Howe', '2026-04-05T13:15:00Z', 256],
  ['lhi', 'Australia/Lord_Howe', '2026-04-05T13:30:00Z', 512],
  // Lord Howe, DST starts 4 October 2026 02:00 (+10:30 -> +11): a 23.5-hour day, 13:30Z to 13:00Z
  ['lhi', 'Australia/Lord_Howe', '2026-10-04T12:45:00Z', 1024],
  ['lhi', 'Australia/Lord_Howe', '2026-10-04T13:00:00Z', 2048],
];

beforeAll(async () => {
  table = await freshTable('u30-zones');
  let now = 0;
  const limiter = new Limiter({ store: table.store, clock: () => now });
  for (const [entity, zone, iso, tokens] of LEASES) {
    now = at(iso);
    const r = await limiter.acquire({
      checks: [
        {
          scope: 'entity',
          key: itemKeys.entityBucket(`${entity}-${iso}`, 'm'),
          limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute' }]),
        },
      ],
      usage: { tokens },
      context: {
        resource: 'm',
        scopes: [
          { entity, timezone: zone },
          { entity: 'parent-all', timezone: 'Asia/Kolkata' },
          { entity: 'grand-all', timezone: 'Australia/Lord_Howe' },
        ],
      },
    });
    if (!r.allowed) throw new Error('refused');
  }
  await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(await streamed(table));
});

async function periods(entity: string, granularity: UsageGranularity, from: string, to: string) {
  return (
    await usageHistory(table.store, { entity, granularity, fromMs: at(from), toMs: at(to) })
  ).map((p) => [p.period_start, p.usage.tokens ?? 0]);
}

describe('zones', () => {
  it('Kolkata: hours at half past, days and months local', async () => {
    expect(await periods('kol', 'hour', '2026-03-10T00:00:00Z', '2026-03-11T00:00:00Z')).toEqual([
      ['2026-03-10T17:30:00.000Z', 1],
      ['2026-03-10T18:30:00.000Z', 2],
    ]);
    expect(await periods('kol', 'day', '2026-03-01T00:00:00Z', '2026-04-05T00:00:00Z')).toEqual([
      ['2026-03-09T18:30:00.000Z', 1],
      ['2026-03-10T18:30:00.000Z', 2],
      ['2026-03-30T18:30:00.000Z', 4],
      ['2026-03-31T18:30:00.000Z', 8],
    ]);
    expect(await periods('kol', 'month', '2026-01-01T00:00:00Z', '2026-06-01T00:00:00Z')).toEqual([
      ['2026-02-28T18:30:00.000Z', 7],
      ['2026-03-31T18:30:00.000Z', 8],
    ]);
  });

  it('New York: a 23-hour and a 25-hour day', async () => {
    expect(await periods('ny', 'day', '2026-03-07T00:00:00Z', '2026-03-11T00:00:00Z')).toEqual([
      ['2026-03-08T05:00:00.000Z', 16],
      ['2026-03-09T04:00:00.000Z', 32],
    ]);
    expect(await periods('ny', 'hour', '2026-03-09T00:00:00Z', '2026-03-09T06:00:00Z')).toEqual([
      ['2026-03-09T03:00:00.000Z', 16],
      ['2026-03-09T04:00:00.000Z', 32],
    ]);
    expect(await periods('ny', 'day', '2026-10-31T00:00:00Z', '2026-11-04T00:00:00Z')).toEqual([
      ['2026-11-01T04:00:00.000Z', 64],
      ['2026-11-02T05:00:00.000Z', 128],
    ]);
    expect(await periods('ny', 'hour', '2026-11-02T00:00:00Z', '2026-11-02T06:00:00Z')).toEqual([
      ['2026-11-02T04:00:00.000Z', 64],
      ['2026-11-02T05:00:00.000Z', 128],
    ]);
  });

  it('Lord Howe: days of 24.5 and 23.5 hours', async () => {
    expect(await periods('lhi', 'day', '2026-04-03T00:00:00Z', '2026-04-08T00:00:00Z')).toEqual([
      ['2026-04-04T13:00:00.000Z', 256],
      ['2026-04-05T13:30:00.000Z', 512],
    ]);
    expect(await periods('lhi', 'hour', '2026-04-05T12:00:00Z', '2026-04-05T15:00:00Z')).toEqual([
      ['2026-04-05T13:00:00.000Z', 256],
      ['2026-04-05T13:30:00.000Z', 512],
    ]);
    expect(await periods('lhi', 'day', '2026-10-02T00:00:00Z', '2026-10-06T00:00:00Z')).toEqual([
      ['2026-10-03T13:30:00.000Z', 1024],
      ['2026-10-04T13:00:00.000Z', 2048],
    ]);
    expect(await periods('lhi', 'hour', '2026-10-04T11:00:00Z', '2026-10-04T14:00:00Z')).toEqual([
      ['2026-10-04T12:30:00.000Z', 1024],
      ['2026-10-04T13:00:00.000Z', 2048],
    ]);
  });

  it('ancestors in other zones and the roll-up count every lease once', async () => {
    const total = LEASES.reduce((n, l) => n + l[3], 0);
    const sum = async (entity: string) =>
      (await periods(entity, 'month', '2026-01-01T00:00:00Z', '2026-12-31T00:00:00Z')).reduce(
        (n, [, t]) => n + Number(t),
        0,
      );
    expect(await sum('parent-all')).toBe(total);
    expect(await sum('grand-all')).toBe(total);
    expect(await sum('*')).toBe(total);
    // Day sums of the roll-up over the year equal the total too (31-day windows of days).
    let days = 0;
    for (let m = 0; m < 12; m++) {
      const from = new Date(Date.UTC(2026, m, 1)).toISOString();
      const to = new Date(Date.UTC(2026, m + 1, 1)).toISOString();
      days += (await periods('*', 'day', from, to)).reduce((n, [, t]) => n + Number(t), 0);
    }
    expect(days).toBe(total);
  });

  it('boards are per local day: Kolkata 1 April holds the lease at 18:31Z on 31 March', async () => {
    const top = await topEntities(table.store, {
      period: 'day',
      date: '2026-04-01',
      metric: 'tokens',
      by: 'usage',
      limit: 10,
    });
    expect(top.items.find((e) => e.entity === 'kol')?.usage.tokens).toBe(8);
    const month = await topEntities(table.store, {
      period: 'month',
      date: '2026-03-01',
      metric: 'tokens',
      by: 'usage',
      limit: 10,
    });
    expect(month.items.find((e) => e.entity === 'kol')?.usage.tokens).toBe(7);
    expect(month.items.find((e) => e.entity === 'ny')?.usage.tokens).toBe(48);
  });
});
