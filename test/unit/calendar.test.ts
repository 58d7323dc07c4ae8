import { calendarWindow } from '@sluice/core';
import { describe, expect, it } from 'vitest';

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
