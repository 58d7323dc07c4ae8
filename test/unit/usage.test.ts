import { itemKeys, parseLimits, ValidationError } from '@sluice/core';
import {
  contributionsOf,
  crossingsOf,
  localDate,
  periodOf,
  shardKey,
  TOP_SHARDS,
  topShard,
} from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';

describe('usage periods', () => {
  it('are hours of the entity’s day, and days and months in its time zone', () => {
    const at = Date.parse('2026-03-08T03:30:00Z'); // still March 7 in New York
    expect(periodOf(at, 'hour', 'America/New_York')).toEqual({
      startMs: Date.parse('2026-03-08T03:00:00Z'),
      endMs: Date.parse('2026-03-08T04:00:00Z'),
    });
    expect(periodOf(at, 'day', 'America/New_York').startMs).toBe(
      Date.parse('2026-03-07T05:00:00Z'),
    );
    expect(periodOf(at, 'month', 'UTC').startMs).toBe(Date.parse('2026-03-01T00:00:00Z'));
    expect(localDate(at, 'America/New_York')).toBe('2026-03-07');
    expect(localDate(at, 'Asia/Kolkata')).toBe('2026-03-08');
  });

  it('start on the half hour where the zone’s offset does, so days are whole hours', () => {
    // 18:20 UTC is 23:50 in Kolkata (+05:30): the hour from 23:00 local, ending with the day.
    expect(periodOf(Date.parse('2026-11-20T18:20:00Z'), 'hour', 'Asia/Kolkata')).toEqual({
      startMs: Date.parse('2026-11-20T17:30:00Z'),
      endMs: Date.parse('2026-11-20T18:30:00Z'),
    });
    // The day New York springs forward has 23 hours; its last one still ends at midnight.
    const last = periodOf(Date.parse('2026-03-09T03:59:00Z'), 'hour', 'America/New_York');
    expect(last.endMs).toBe(periodOf(last.startMs, 'day', 'America/New_York').endMs);
  });
});

describe('budget threshold crossings', () => {
  const key = itemKeys.entityWide('team-1');
  const image = (used: bigint, window = 1_000n) => ({
    a_monthly: '1000|0.5,0.8,1',
    w_monthly: window,
    u_monthly: used,
  });

  it('are the thresholds a change takes usage from below to at or above', () => {
    const crossed = crossingsOf({ key, oldImage: image(400n), newImage: image(800n) });
    expect(crossed.map((c) => c.alert.threshold)).toEqual([0.5, 0.8]);
    expect(crossed[0]?.alert).toMatchObject({
      entity: 'team-1',
      resource: null,
      limit: 'monthly',
      used: 800,
      limit_value: 1000,
    });
    expect(crossingsOf({ key, oldImage: image(800n), newImage: image(900n) })).toEqual([]);
    expect(crossingsOf({ key, oldImage: image(900n), newImage: image(700n) })).toEqual([]); // a refund
  });

  it('count a new window from zero', () => {
    const crossed = crossingsOf({ key, oldImage: image(990n, 1n), newImage: image(600n, 2n) });
    expect(crossed.map((c) => c.alert.threshold)).toEqual([0.5]);
  });

  it('are none on an item of a split scope, whatever definition it records from before', () => {
    // A shard holds a share of the quota: judged there, the alert fired once per shard, at its
    // share, naming the shard's key (`*#1`) as the resource.
    const shard = { key: shardKey(key, 1), oldImage: image(100n), newImage: image(800n) };
    const own = { key, oldImage: { ...image(100n), n: 4n }, newImage: { ...image(800n), n: 4n } };
    const splitting = { key, oldImage: image(100n), newImage: { ...image(800n), n: -4n } };

    expect(crossingsOf(shard)).toEqual([]);
    expect(crossingsOf(own)).toEqual([]);
    expect(crossingsOf(splitting)).toEqual([]);
  });
});

describe('usage contributions', () => {
  const wire = ['m', [['k']]];
  const lease = itemKeys.lease('L1');

  it('ignore a change that does not move the usage event (a settlement on the same item)', () => {
    const ev = JSON.stringify(['L1', 0, 1, 2, { tokens: 5 }, wire]);
    const key = itemKeys.entityBucket('k', 'm');
    expect(contributionsOf({ key, oldImage: { ev }, newImage: { ev, b_tpm: 9n } })).toEqual([]);
    expect(contributionsOf({ key, newImage: { ev } })).toEqual([
      expect.objectContaining({ kind: 'acquire', id: 'L1', leases: 1n }),
    ]);
  });

  it('take back the estimate a cancellation names', () => {
    const key = itemKeys.entityBucket('k', 'm');
    const ev = JSON.stringify(['L1', -1, 1, 2, { tokens: 5, requests: 1 }, wire]);
    const [c] = contributionsOf({ key, newImage: { ev } });
    expect(c?.metrics).toEqual(
      new Map([
        ['tokens', -5n],
        ['requests', -1n],
      ]),
    );
    expect(c?.leases).toBe(-1n);
  });

  it('add a settlement’s difference from the estimate, then from the totals before it', () => {
    const c = JSON.stringify([1, wire, { tokens: 500, requests: 1 }]);
    const first = contributionsOf({
      key: lease,
      newImage: { c, t: '{"requests":1,"tokens":420}' },
    });
    expect(first.map((x) => [x.kind, x.metrics, x.leases])).toEqual([
      ['settle', new Map([['tokens', -80n]]), 0n],
    ]);
    const next = contributionsOf({
      key: lease,
      oldImage: { c, t: '{"requests":1,"tokens":420}' },
      newImage: { c, t: '{"requests":1,"tokens":0}' },
    });
    expect(next.map((x) => [x.metrics, x.leases])).toEqual([[new Map([['tokens', -420n]]), 0n]]);
    const cancelled = contributionsOf({
      key: lease,
      oldImage: { c, t: '{"requests":1,"tokens":420}' },
      newImage: { c, t: '{"requests":0,"tokens":0}' },
    });
    expect(cancelled[0]?.leases).toBe(-1n); // a lease that uses nothing counts none
  });

  it('spread top-entity rows over every partition', () => {
    const shards = new Set(Array.from({ length: 200 }, (_, i) => topShard(`key-${i}`)));
    expect([...shards].sort()).toEqual(Array.from({ length: TOP_SHARDS }, (_, i) => i));
  });
});

describe('limit modes and alert thresholds', () => {
  it('validate, and name the field', () => {
    expect(
      parseLimits([{ name: 'x', metric: 'tokens', limit: 5, per: 'minute', mode: 'shadow' }])[0],
    ).toMatchObject({ shadow: true });
    const bad = [
      [
        { name: 'q', metric: 'tokens', limit: 5, window: 'month', alerts: [1.5] },
        'limits[0].alerts[0]',
      ],
      [
        { name: 'q', metric: 'tokens', limit: 5, window: 'month', alerts: [0] },
        'limits[0].alerts[0]',
      ],
      [{ name: 'x', metric: 'tokens', limit: 5, per: 'minute', mode: 'dry' }, 'limits[0].mode'],
    ] as const;
    for (const [limit, field] of bad) {
      expect(() => parseLimits([limit])).toThrow(ValidationError);
      try {
        parseLimits([limit]);
      } catch (error) {
        expect((error as ValidationError).field).toBe(field);
      }
    }
  });

  it('keep zod’s English messages for the checks Sluice makes', () => {
    const cases: [unknown, RegExp][] = [
      [
        [{ name: 'x', metric: 'tokens', limit: -1, per: 'minute' }],
        /Too small: expected number to be >=1/,
      ],
      [
        [{ name: 'x', metric: 'tokens', limit: 'many', per: 'minute' }],
        /expected number, received string/,
      ],
      [[{ name: 'x', metric: 'Tokens!', limit: 1, per: 'minute' }], /must match pattern/],
      [[{ name: 'x', metric: 'tokens', limit: 1, window: 'year' }], /expected one of/],
    ];
    for (const [input, message] of cases) expect(() => parseLimits(input)).toThrow(message);
  });
});
