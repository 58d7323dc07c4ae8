/**
 * Usage history at its edges: records no engine writes (another program wrote the item) are left
 * out and reported, never failing their batch; a range's last period is read whole, as its first.
 */
import { itemKeys, Limiter, parseLimits, UsageAggregator, usageHistory } from '@sluice/core';
import type { ItemChange } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { streamEvent, streamed } from '../support/streams.js';
import { fileTable } from '../support/table.js';

const table = fileTable('usage-odd');

const SHARD = 'shardId-00000001700000000000-zzzzzzzz';
const RESOURCE = 'gpt-4o';

const check = (entity: string) => ({
  scope: 'entity' as const,
  key: itemKeys.entityBucket(entity, RESOURCE),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 100_000_000, per: 'minute' }]),
});

/** A change of an entity's item whose `ev` attribute is `ev`, at `sequence`. */
const eventChange = (entity: string, ev: string, sequence: number, atMs: number): ItemChange =>
  streamEvent(SHARD, RESOURCE, { entity, ev, sequence, atMs });

const tokensOf = async (entity: string, fromMs: number, toMs: number) =>
  (await usageHistory(table.store, { entity, granularity: 'day', fromMs, toMs })).reduce(
    (n, p) => n + (p.usage.tokens ?? 0),
    0,
  );

describe('the aggregator, given records no engine writes (another program wrote the item)', () => {
  it('counts the rest of the batch and reports them unplaced, never failing on every delivery', async () => {
    const now = Date.now();
    const entity = 'hostile-neighbour';
    const good = JSON.stringify([
      'lease-good',
      0,
      now,
      now + 3_600_000,
      { tokens: 9 },
      [RESOURCE, [[entity]]],
    ]);
    const hostile = [
      'not json',
      '{"an":"object"}',
      '42',
      JSON.stringify(['lease-x', 0, now, now + 1, { tokens: 1.5 }, [RESOURCE, [['e']]]]),
      JSON.stringify(['lease-y', 0, 'soon', now + 1, { tokens: 1 }, [RESOURCE, [['e']]]]),
      JSON.stringify(['lease-z', 0, 1e300, now + 1, { tokens: 1 }, [RESOURCE, [['e']]]]),
      JSON.stringify(['lease-w', 0, now, now + 1, { tokens: 1 }, 'no context']),
    ];
    const quota = itemKeys.entityWide('hostile-quota');
    const changes = [
      ...hostile.map((ev, i) => eventChange(`hostile-${i}`, ev, 100 + i, now)),
      // A quota with alerts whose window no date holds.
      {
        key: quota,
        newImage: { ...quota, a_monthly: '100|0.5', w_monthly: 10n ** 20n, u_monthly: 90n },
        position: { shard: SHARD, sequence: '150', atMs: now },
      },
      eventChange(entity, good, 200, now),
    ];

    const report = await new UsageAggregator({ store: table.store }).apply(changes);

    expect(report.unplaced).toHaveLength(hostile.length);
    expect(await tokensOf(entity, now - 86_400_000, now + 86_400_000)).toBe(9);
  });
});

describe('GET /v1/usage: each period overlapping the range', () => {
  it('is the whole period at the end of the range as at its start', async () => {
    const entity = 'whole-days';
    const early = Date.parse('2026-03-10T02:00:00Z');
    const late = Date.parse('2026-03-10T20:00:00Z');
    for (const atMs of [early, late]) {
      const limiter = new Limiter({ store: table.store, clock: () => atMs });
      const r = await limiter.acquire({
        checks: [check(entity)],
        usage: { tokens: atMs === early ? 1 : 10 },
        context: { resource: RESOURCE, scopes: [{ entity, timezone: 'UTC' }] },
      });
      if (!r.allowed) throw new Error('refused');
    }
    await new UsageAggregator({ store: table.store }).apply(await streamed(table));

    const day = (fromIso: string, toIso: string) =>
      usageHistory(table.store, {
        entity,
        granularity: 'day',
        fromMs: Date.parse(fromIso),
        toMs: Date.parse(toIso),
      });
    // From noon: the day of 10 March begins before it, and is read whole (11 tokens).
    expect(await day('2026-03-10T12:00:00Z', '2026-03-11T00:00:00Z')).toMatchObject([
      { period_start: '2026-03-10T00:00:00.000Z', usage: { tokens: 11 } },
    ]);
    // To noon: the same day, the same period, must be read whole too.
    expect(await day('2026-03-09T00:00:00Z', '2026-03-10T12:00:00Z')).toMatchObject([
      { period_start: '2026-03-10T00:00:00.000Z', usage: { tokens: 11 } },
    ]);
  });

  it('holds all of a New York day asked for as a date alone (to=2026-11-30)', async () => {
    const entity = 'new-york-day';
    // 02:00 UTC on 1 December is 21:00 on 30 November in New York.
    const atMs = Date.parse('2026-12-01T02:00:00Z');
    const r = await new Limiter({ store: table.store, clock: () => atMs }).acquire({
      checks: [check(entity)],
      usage: { tokens: 5 },
      context: { resource: RESOURCE, scopes: [{ entity, timezone: 'America/New_York' }] },
    });
    if (!r.allowed) throw new Error('refused');
    await new UsageAggregator({ store: table.store }).apply(await streamed(table));

    // What GET /v1/usage?from=2026-11-30&to=2026-11-30 reads: [30 Nov, 1 Dec) UTC.
    const days = await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: Date.parse('2026-11-30T00:00:00Z'),
      toMs: Date.parse('2026-12-01T00:00:00Z'),
    });
    expect(days).toMatchObject([
      { period_start: '2026-11-30T05:00:00.000Z', usage: { tokens: 5 } },
    ]);
  });
});
