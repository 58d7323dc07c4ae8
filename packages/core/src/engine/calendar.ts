/**
 * Calendar windows (day, ISO week, month) in any IANA time zone, DST-correct.
 *
 * A window starts at the first instant whose local date is the window's first date. That is
 * local midnight on ordinary days, and the end of the gap where a zone springs forward at
 * midnight. Found by binary search over the UTC minutes around the date, so no time zone
 * database is needed beyond the runtime's Intl. Each zone's current window is cached until it
 * ends: the hot path does one comparison.
 */

export type CalendarUnit = 'day' | 'week' | 'month';

/** A window `[startMs, endMs)`; `startMs` also identifies it in storage. */
export interface CalendarWindow {
  readonly startMs: number;
  readonly endMs: number;
}

const MINUTE_MS = 60_000;
const formatters = new Map<string, Intl.DateTimeFormat>();
const current = new Map<string, CalendarWindow>();

/**
 * The window of `unit` in `timeZone` that contains `nowMs`.
 *
 * @example
 * calendarWindow(Date.parse('2026-03-08T12:00:00Z'), 'day', 'America/New_York')
 * // { startMs: Date.parse('2026-03-08T05:00:00Z'), endMs: Date.parse('2026-03-09T04:00:00Z') }
 */
export function calendarWindow(
  nowMs: number,
  unit: CalendarUnit,
  timeZone: string,
): CalendarWindow {
  const cacheKey = `${unit} ${timeZone}`;
  const cached = current.get(cacheKey);
  if (cached && nowMs >= cached.startMs && nowMs < cached.endMs) return cached;

  const today = localDate(nowMs, timeZone);
  let first: LocalDate;
  let next: LocalDate;
  if (unit === 'day') {
    first = today;
    next = addDays(today, 1);
  } else if (unit === 'week') {
    const mondayBased =
      (new Date(Date.UTC(today.year, today.month - 1, today.day)).getUTCDay() + 6) % 7;
    first = addDays(today, -mondayBased);
    next = addDays(first, 7);
  } else {
    first = { year: today.year, month: today.month, day: 1 };
    next = addMonths(first, 1);
  }
  const window = {
    startMs: startOfLocalDate(first, timeZone),
    endMs: startOfLocalDate(next, timeZone),
  };
  // A caller far from "now" (tests, replays) must not evict the live entry with an old window.
  if (
    nowMs >= window.startMs &&
    nowMs < window.endMs &&
    (!cached || window.startMs >= cached.startMs)
  ) {
    current.set(cacheKey, window);
  }
  return window;
}

interface LocalDate {
  readonly year: number;
  readonly month: number;
  readonly day: number;
}

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The local date of an instant in a time zone, as `YYYY-MM-DD`. */
export function isoDate(ms: number, timeZone: string): string {
  const { year, month, day } = localDate(ms, timeZone);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${String(year).padStart(4, '0')}-${two(month)}-${two(day)}`;
}

function localDate(ms: number, timeZone: string): LocalDate {
  let year = 0;
  let month = 0;
  let day = 0;
  for (const part of formatter(timeZone).formatToParts(ms)) {
    if (part.type === 'year') year = Number(part.value);
    else if (part.type === 'month') month = Number(part.value);
    else if (part.type === 'day') day = Number(part.value);
  }
  return { year, month, day };
}

function ordinal(d: LocalDate): number {
  return d.year * 10_000 + d.month * 100 + d.day;
}

function addDays(d: LocalDate, days: number): LocalDate {
  const x = new Date(Date.UTC(d.year, d.month - 1, d.day + days));
  return { year: x.getUTCFullYear(), month: x.getUTCMonth() + 1, day: x.getUTCDate() };
}

function addMonths(d: LocalDate, months: number): LocalDate {
  const x = new Date(Date.UTC(d.year, d.month - 1 + months, 1));
  return { year: x.getUTCFullYear(), month: x.getUTCMonth() + 1, day: 1 };
}

/** First UTC minute whose local date in `timeZone` is `date` or later. */
function startOfLocalDate(date: LocalDate, timeZone: string): number {
  const wallMs = Date.UTC(date.year, date.month - 1, date.day);
  const target = ordinal(date);
  // UTC offsets lie within [-12h, +14h], so the answer lies within (wall - 15h, wall + 13h].
  let lo = Math.floor((wallMs - 15 * 3_600_000) / MINUTE_MS); // local date before `date`
  let hi = Math.floor((wallMs + 13 * 3_600_000) / MINUTE_MS); // local date `date` or later
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ordinal(localDate(mid * MINUTE_MS, timeZone)) >= target) hi = mid;
    else lo = mid;
  }
  return hi * MINUTE_MS;
}
