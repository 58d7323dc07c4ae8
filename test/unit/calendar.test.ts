import { calendarWindow } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoDate } from '../../packages/core/src/engine/calendar.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

describe('calendarWindow', () => {
  it('starts a UTC day at midnight UTC', () => {
    const w = calendarWindow(at('2026-05-10T23:59:59.999Z'), 'day', 'UTC');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-05-10T00:00:00.000Z',
      '2026-05-11T00:00:00.000Z',
    ]);
  });

  it('gives a 23-hour day when New York springs forward', () => {
    const w = calendarWindow(at('2026-03-08T12:00:00Z'), 'day', 'America/New_York');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-03-08T05:00:00.000Z',
      '2026-03-09T04:00:00.000Z',
    ]);
  });

  it('gives a 25-hour day when New York falls back', () => {
    const w = calendarWindow(at('2026-11-01T12:00:00Z'), 'day', 'America/New_York');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-11-01T04:00:00.000Z',
      '2026-11-02T05:00:00.000Z',
    ]);
  });

  it('starts a Tokyo day the previous UTC evening', () => {
    const w = calendarWindow(at('2026-01-15T16:00:00Z'), 'day', 'Asia/Tokyo');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-01-15T15:00:00.000Z',
      '2026-01-16T15:00:00.000Z',
    ]);
  });

  it('starts a month in a half-hour zone east of UTC', () => {
    const w = calendarWindow(at('2026-01-15T16:00:00Z'), 'month', 'Asia/Kolkata');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2025-12-31T18:30:00.000Z',
      '2026-01-31T18:30:00.000Z',
    ]);
  });

  it('starts the day where the gap ends when midnight does not exist (Santiago)', () => {
    const w = calendarWindow(at('2026-09-06T12:00:00Z'), 'day', 'America/Santiago');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-09-06T04:00:00.000Z',
      '2026-09-07T03:00:00.000Z',
    ]);
  });

  it('starts ISO weeks on Monday', () => {
    const w = calendarWindow(at('2026-11-29T23:00:00Z'), 'week', 'UTC'); // a Sunday
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-11-23T00:00:00.000Z',
      '2026-11-30T00:00:00.000Z',
    ]);
  });

  it('spans a month that contains a DST change', () => {
    const w = calendarWindow(at('2026-10-25T12:00:00Z'), 'month', 'Europe/Berlin');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-09-30T22:00:00.000Z',
      '2026-10-31T23:00:00.000Z',
    ]);
  });

  it('agrees with itself at every boundary of a year of days', () => {
    let start = calendarWindow(at('2026-01-01T12:00:00Z'), 'day', 'Australia/Lord_Howe').startMs;
    for (let i = 0; i < 366; i++) {
      const w = calendarWindow(start, 'day', 'Australia/Lord_Howe');
      expect(w.startMs).toBe(start);
      expect(calendarWindow(w.endMs - 1, 'day', 'Australia/Lord_Howe').startMs).toBe(start);
      start = w.endMs;
    }
  });
});

describe('calendarWindow at the edges of weeks, months and years', () => {
  it('starts the ISO week of New Year’s Day in the year before', () => {
    const w = calendarWindow(at('2026-01-01T12:00:00Z'), 'week', 'UTC'); // a Thursday
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2025-12-29T00:00:00.000Z',
      '2026-01-05T00:00:00.000Z',
    ]);
  });

  it('gives a 167-hour week when Berlin springs forward', () => {
    const w = calendarWindow(at('2026-03-26T12:00:00Z'), 'week', 'Europe/Berlin');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-03-22T23:00:00.000Z',
      '2026-03-29T22:00:00.000Z',
    ]);
  });

  it('ends December in January of the next year', () => {
    const w = calendarWindow(at('2026-12-15T12:00:00Z'), 'month', 'UTC');
    expect([iso(w.startMs), iso(w.endMs)]).toEqual([
      '2026-12-01T00:00:00.000Z',
      '2027-01-01T00:00:00.000Z',
    ]);
  });

  it('gives February 29 days in a leap year', () => {
    const w = calendarWindow(at('2028-02-10T00:00:00Z'), 'month', 'UTC');
    expect((w.endMs - w.startMs) / 86_400_000).toBe(29);
  });

  it('answers an earlier instant after a later one, and the later one still', () => {
    const later = calendarWindow(at('2026-06-20T12:00:00Z'), 'day', 'Asia/Kathmandu');
    const earlier = calendarWindow(at('2026-06-10T12:00:00Z'), 'day', 'Asia/Kathmandu');
    const again = calendarWindow(at('2026-06-20T12:00:00Z'), 'day', 'Asia/Kathmandu');
    expect(iso(earlier.startMs)).toBe('2026-06-09T18:15:00.000Z');
    expect(again).toEqual(later);
    expect(iso(later.startMs)).toBe('2026-06-19T18:15:00.000Z');
  });
});

describe('calendarWindow, for any instant and zone', () => {
  const zones = [
    'UTC',
    'America/New_York',
    'America/St_Johns',
    'America/Santiago',
    'Europe/Berlin',
    'Asia/Kolkata',
    'Asia/Kathmandu',
    'Australia/Lord_Howe',
    'Pacific/Chatham',
  ];
  const instants = fc.integer({ min: at('2000-01-01T00:00:00Z'), max: at('2100-01-01T00:00:00Z') });
  const cases = fc.tuple(
    instants,
    fc.constantFrom('day', 'week', 'month' as const),
    fc.constantFrom(...zones),
  );
  const runs = { seed: 20_260_320, numRuns: 400 };
  const minusDays = (date: string, days: number) =>
    new Date(Date.parse(date) - days * 86_400_000).toISOString().slice(0, 10);

  it('holds the instant, and starts at the first instant of its first local date', () => {
    fc.assert(
      fc.property(cases, ([t, unit, zone]) => {
        const w = calendarWindow(t, unit, zone);
        expect(w.startMs <= t && t < w.endMs).toBe(true);
        expect(isoDate(w.startMs - 1, zone)).not.toBe(isoDate(w.startMs, zone));
        expect(isoDate(w.endMs - 1, zone)).not.toBe(isoDate(w.endMs, zone));
      }),
      runs,
    );
  });

  it('tiles time: the next window starts where this one ends', () => {
    fc.assert(
      fc.property(cases, ([t, unit, zone]) => {
        const w = calendarWindow(t, unit, zone);
        expect(calendarWindow(w.endMs, unit, zone).startMs).toBe(w.endMs);
        expect(calendarWindow(w.endMs - 1, unit, zone)).toEqual(w);
      }),
      runs,
    );
  });

  it('starts weeks on a Monday and months on the first, and spans 23 to 25 hours a day', () => {
    fc.assert(
      fc.property(cases, ([t, unit, zone]) => {
        const w = calendarWindow(t, unit, zone);
        const first = isoDate(w.startMs, zone);
        const last = isoDate(w.endMs - 1, zone);
        if (unit === 'day') {
          expect(last).toBe(first);
          expect(w.endMs - w.startMs).toBeGreaterThanOrEqual(23 * 3_600_000);
          expect(w.endMs - w.startMs).toBeLessThanOrEqual(25 * 3_600_000);
        } else if (unit === 'week') {
          expect(new Date(`${first}T00:00:00Z`).getUTCDay()).toBe(1);
          expect(minusDays(last, 6)).toBe(first);
        } else {
          expect(first.endsWith('-01')).toBe(true);
          expect(last.slice(0, 7)).toBe(first.slice(0, 7));
        }
      }),
      runs,
    );
  });
});
