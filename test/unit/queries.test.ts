/**
 * The read routes' query parameters (lambdas/src/queries.ts) and the listings' cursors: bad input
 * is a ValidationError naming the field, never a silent reading nor a query DynamoDB refuses.
 */
import { type AdminStore, listAlerts, usageHistory, ValidationError } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import {
  alertsQuery,
  parseQuery,
  readDate,
  readInstant,
  topQuery,
  usageQuery,
  usageRange,
} from '../../lambdas/src/queries.js';
import {
  decodeCursor,
  encodeCursor,
  isAlertKey,
  isAuditKey,
} from '../../packages/core/src/store/cursor.js';

/** The field and message a call throws with. */
function refusal(call: () => unknown): { field: string; message: string } | undefined {
  try {
    call();
  } catch (error) {
    if (error instanceof ValidationError) return { field: error.field, message: error.message };
    throw error;
  }
  return undefined;
}

const NOW = Date.parse('2026-11-15T12:00:00Z');
/** A store that must not be reached. */
const unreachable = new Proxy({} as AdminStore, {
  get: () => () => {
    throw new Error('the store was reached');
  },
});

describe('readInstant', () => {
  it('reads dates as midnight UTC and date-times with or without an offset (UTC)', () => {
    const cases: [string, string, boolean][] = [
      ['2026-11-01', '2026-11-01T00:00:00.000Z', true],
      ['2026-11-01T09:00:00Z', '2026-11-01T09:00:00.000Z', false],
      ['2026-11-01T09:00', '2026-11-01T09:00:00.000Z', false],
      ['2026-11-01 09:00:00', '2026-11-01T09:00:00.000Z', false],
      ['2026-11-01T09:00:00.123456+01:00', '2026-11-01T08:00:00.123Z', false],
      ['2026-11-01T00:30:00-0530', '2026-11-01T06:00:00.000Z', false],
      ['2024-02-29', '2024-02-29T00:00:00.000Z', true],
      ['2000-01-01', '2000-01-01T00:00:00.000Z', true],
      ['2999-12-31T23:59:59.999Z', '2999-12-31T23:59:59.999Z', false],
    ];
    for (const [text, iso, dateOnly] of cases) {
      expect({ text, reading: readInstant(text) }).toEqual({
        text,
        reading: { ok: true, ms: Date.parse(iso), dateOnly },
      });
    }
  });

  it('refuses what is not a calendar date or time, or falls outside 2000–2999 (UTC)', () => {
    const cases: [string, RegExp][] = [
      ['2026-02-30', /^not a calendar date: 2026-02-30$/],
      ['2026-02-31T10:00:00Z', /^not a calendar date/],
      ['2025-02-29', /^not a calendar date/],
      ['2026-13-01', /^not a calendar date/],
      ['2026-00-10', /^not a calendar date/],
      ['2026-04-00', /^not a calendar date/],
      ['2026-11-01T24:00', /^not a time of day/],
      ['2026-11-01T23:60', /^not a time of day/],
      ['2026-11-01T23:59:60Z', /^not a time of day/],
      ['2026-11-01T10:00+24:00', /^not a UTC offset/],
      ['2026-11-01T10:00+05:60', /^not a UTC offset/],
      ['9999-12-31', /^out of range: from 2000-01-01 to 2999-12-31$/],
      ['1999-12-31', /^out of range/],
      ['0000-01-01', /^out of range/],
      ['0050-06-01', /^out of range/], // not read as 1950
      ['3000-01-01', /^out of range/],
      ['2999-12-31T23:30:00-01:00', /^out of range: .* \(UTC\)$/], // 3000-01-01T00:30Z
      ['2000-01-01T00:30:00+01:00', /^out of range/], // 1999-12-31T23:30Z
      ['+010000-01-01', /^must be an ISO 8601 date or date-time/],
      ['yesterday', /^must be an ISO 8601/],
      ['2026-11-01T9:00', /^must be an ISO 8601/],
      ['2026-11-01Z', /^must be an ISO 8601/],
      ['2026-11-01T09:00:00 01:00', /^must be an ISO 8601/], // `+` not encoded in the URL
      ['', /^must be an ISO 8601/],
    ];
    for (const [text, message] of cases) {
      const reading = readInstant(text);
      expect({ text, ok: reading.ok }).toEqual({ text, ok: false });
      if (!reading.ok) expect(reading.message, text).toMatch(message);
    }
  });
});

describe('readDate', () => {
  it('takes a calendar date alone, within 2000–2999', () => {
    expect(readDate('2026-11-01')).toEqual({
      ok: true,
      ms: Date.parse('2026-11-01T00:00:00Z'),
      dateOnly: true,
    });
    expect(readDate('2026-02-30')).toEqual({
      ok: false,
      message: 'not a calendar date: 2026-02-30',
    });
    expect(readDate('2026-11-01T00:00:00Z')).toEqual({
      ok: false,
      message: 'must be a date, YYYY-MM-DD',
    });
    expect(readDate('9999-12-31')).toMatchObject({ ok: false });
  });
});

describe('the read routes’ query schemas', () => {
  it('answer each bad parameter with the field it names', () => {
    const cases: [typeof usageQuery | typeof topQuery | typeof alertsQuery, object, string][] = [
      [usageQuery, { entity: 'a', to: '9999-12-31' }, 'to'],
      [usageQuery, { entity: 'a', from: '2026-02-30' }, 'from'],
      [usageQuery, { entity: 'a', from: '2026-02-01', to: '2026-02-31' }, 'to'],
      [usageQuery, { entity: 'a', to: '2999-12-31T23:30:00-01:00' }, 'to'],
      [usageQuery, { entity: 'a', from: 'garbage' }, 'from'],
      [usageQuery, { entity: 'a', colour: 'blue' }, 'colour'],
      [topQuery, { date: '2026-02-30' }, 'date'],
      [topQuery, { date: '2026-13-40' }, 'date'],
      [topQuery, { date: '1999-12-31' }, 'date'],
      [topQuery, { limit: '1e2' }, 'limit'],
      [alertsQuery, { limit: '0' }, 'limit'],
    ];
    for (const [schema, query, field] of cases) {
      const got = refusal(() => parseQuery(schema, query as Record<string, string>));
      expect({ query, field: got?.field }).toEqual({ query, field });
    }
    expect(refusal(() => parseQuery(topQuery, { date: '2026-02-30' }))?.message).toBe(
      'date: not a calendar date: 2026-02-30',
    );
    expect(parseQuery(usageQuery, { entity: 'a', from: '2026-11-01', to: '2026-11-30' })).toEqual({
      entity: 'a',
      from: '2026-11-01',
      to: '2026-11-30',
    });
  });
});

describe('usageRange', () => {
  it('reads a date alone as `to` to the end of that day, and defaults from `to` or now', () => {
    expect(usageRange({ from: '2026-11-01', to: '2026-11-30' }, 'day', NOW)).toEqual({
      fromMs: Date.parse('2026-11-01T00:00:00Z'),
      toMs: Date.parse('2026-12-01T00:00:00Z'),
    });
    expect(usageRange({}, 'hour', NOW)).toEqual({ fromMs: NOW - 86_400_000, toMs: NOW });
    expect(usageRange({ to: '2026-11-01T00:00:00Z' }, 'day', NOW).fromMs).toBe(
      Date.parse('2026-10-01T00:00:00Z'),
    );
    // The default `from` starts no earlier than the range queries may read.
    expect(usageRange({ to: '2000-01-05' }, 'month', NOW)).toEqual({
      fromMs: Date.parse('2000-01-01T00:00:00Z'),
      toMs: Date.parse('2000-01-06T00:00:00Z'),
    });
    expect(usageRange({ to: '2999-12-31' }, 'day', NOW).toMs).toBe(
      Date.parse('3000-01-01T00:00:00Z'),
    );
  });

  it('refuses a `from` not before `to`, a range too long, and what the schema refuses', () => {
    const cases: [{ from?: string; to?: string }, 'hour' | 'day' | 'month', string, string][] = [
      [{ from: '2026-11-02', to: '2026-11-01' }, 'day', 'to', 'must be after from'],
      [
        { from: '2026-11-02T00:00:00Z', to: '2026-11-02T00:00:00Z' },
        'hour',
        'to',
        'must be after from',
      ],
      [{ from: '2099-01-01' }, 'day', 'from', 'must be in the past'],
      [{ from: '2026-01-01', to: '2026-11-01' }, 'hour', 'to', 'at most 31 days after from'],
      [{ from: '2020-01-01' }, 'day', 'from', 'at most 400 days before to (now)'],
      [{ to: '9999-12-31' }, 'month', 'to', 'out of range: from 2000-01-01 to 2999-12-31'],
      [{ from: '2026-02-30' }, 'day', 'from', 'not a calendar date: 2026-02-30'],
    ];
    for (const [query, granularity, field, message] of cases) {
      expect({ query, got: refusal(() => usageRange(query, granularity, NOW)) }).toEqual({
        query,
        got: { field, message: `${field}: ${message}` },
      });
    }
  });
});

describe('usageHistory', () => {
  it('refuses a range its keys cannot order before it queries (never a DynamoDB error)', async () => {
    const query = { entity: 'a', granularity: 'day' as const };
    const year10000 = Date.parse('+010000-01-01T00:00:00Z');
    await expect(
      usageHistory(unreachable, { ...query, fromMs: year10000 - 86_400_000, toMs: year10000 }),
    ).rejects.toMatchObject({ field: 'to' });
    await expect(
      usageHistory(unreachable, { ...query, fromMs: Date.parse('0000-01-01'), toMs: 0 }),
    ).rejects.toMatchObject({ field: 'from' });
    await expect(
      usageHistory(unreachable, { ...query, fromMs: Number.NaN, toMs: NOW }),
    ).rejects.toMatchObject({ field: 'from' });
  });
});

describe('listing cursors', () => {
  it('round-trip a sort key, and refuse anything else naming `cursor`', () => {
    const sk = '2026-11-01T00:00:00.000Z#entity#a#*#monthly#0.8';
    expect(isAlertKey(sk)).toBe(true);
    expect(decodeCursor(encodeCursor(sk), isAlertKey)).toBe(sk);
    expect(decodeCursor(undefined, isAlertKey)).toBeUndefined();
    const long = `2026-11-01T00:00:00.000Z#entity#${'a'.repeat(1_100)}#x`;
    for (const cursor of [
      'garbage',
      '',
      'abc!',
      encodeCursor('abc'),
      `${encodeCursor(sk)}=`,
      encodeCursor(long), // longer than any DynamoDB sort key
    ]) {
      expect({
        cursor,
        got: refusal(() => decodeCursor(cursor, isAlertKey))?.field,
      }).toEqual({ cursor, got: 'cursor' });
    }
  });

  it('of one listing are refused by the other (audit entries and budget alerts)', () => {
    const audit = '2026-11-01T00:00:00.000Z#0123456789ab';
    const alert = '2026-11-01T00:00:00.000Z#entity#a#*#monthly#0.8';
    expect([isAuditKey(audit), isAlertKey(audit)]).toEqual([true, false]);
    expect([isAuditKey(alert), isAlertKey(alert)]).toEqual([false, true]);
    expect(refusal(() => decodeCursor(encodeCursor(audit), isAlertKey))?.field).toBe('cursor');
    expect(refusal(() => decodeCursor(encodeCursor(alert), isAuditKey))?.field).toBe('cursor');
  });

  it('of budget alerts are checked before the store is read', async () => {
    await expect(listAlerts(unreachable, { limit: 10, cursor: 'garbage' })).rejects.toMatchObject({
      field: 'cursor',
    });
  });
});
