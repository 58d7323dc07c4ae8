/**
 * Numbers with their units and times in a time zone: every figure the console shows goes
 * through here, so a count of tokens never reads as dollars and an hour is always a zone's hour.
 */

const whole = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const usdFormat = new Intl.NumberFormat('en-US', {
  style: 'currency',
  currency: 'USD',
  minimumFractionDigits: 2,
  maximumFractionDigits: 6,
});

/** A count, grouped by thousands. */
export const count = (n: number): string => whole.format(n);

/** Micro-dollars as dollars, exact to the micro-dollar. */
export const usd = (micro: number): string => usdFormat.format(micro / 1_000_000);

/** The unit of a metric, as a word after its count ('' for custom metrics). */
export function unitOf(metric: string): string {
  if (metric === 'requests') return 'requests';
  if (metric === 'tokens' || metric.endsWith('_tokens')) return 'tokens';
  return '';
}

/** A metric's value with its unit: `1,500 tokens`, `$0.0125`, `3 requests`. */
export function withUnit(metric: string, n: number): string {
  if (metric === 'cost_micro_usd') return usd(n);
  const unit = unitOf(metric);
  return unit ? `${count(n)} ${unit}` : count(n);
}

/** Whether `zone` is a time zone this browser knows; UTC otherwise. */
export function zoneOrUtc(zone: string | undefined): string {
  if (!zone) return 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    return 'UTC';
  }
}

/** An instant (ISO 8601) in `zone`: `12 Mar 2026, 14:05 (Europe/Paris)`. */
export function time(iso: string, zone = 'UTC'): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const text = new Intl.DateTimeFormat('en-GB', {
    timeZone: zoneOrUtc(zone),
    dateStyle: 'medium',
    timeStyle: 'short',
  }).format(at);
  return `${text} (${zoneOrUtc(zone)})`;
}

/** The start of a period in `zone`, as short as its granularity allows. */
export function periodLabel(iso: string, granularity: string, zone = 'UTC'): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const options: Intl.DateTimeFormatOptions =
    granularity === 'hour'
      ? { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }
      : granularity === 'day'
        ? { day: '2-digit', month: 'short', year: 'numeric' }
        : { month: 'long', year: 'numeric' };
  return new Intl.DateTimeFormat('en-GB', { ...options, timeZone: zoneOrUtc(zone) }).format(at);
}

/** A duration in milliseconds, in the largest unit that fits. */
export function duration(ms: number): string {
  if (ms < 1_000) return `${count(ms)} ms`;
  if (ms < 120_000) return `${count(Math.ceil(ms / 1_000))} s`;
  if (ms < 7_200_000) return `${count(Math.ceil(ms / 60_000))} min`;
  if (ms < 172_800_000) return `${count(Math.ceil(ms / 3_600_000))} h`;
  return `${count(Math.ceil(ms / 86_400_000))} days`;
}

/** Today's date (UTC) as YYYY-MM-DD. */
export const todayUtc = (): string => new Date().toISOString().slice(0, 10);

/** A value read from a plain wire object by a name a user chose: own properties only. */
export function own<T>(
  object: Readonly<Record<string, T>> | undefined,
  name: string,
): T | undefined {
  // names-ok: the one guard names go through (own properties only)
  return object && Object.hasOwn(object, name) ? object[name] : undefined;
}

/** Whether `allowed` (a plan's `allowed_resources`: names or `*` patterns) takes `resource`. */
export function allows(allowed: readonly string[] | undefined, resource: string): boolean {
  if (!allowed) return true;
  return allowed.some((pattern) => {
    const literal = pattern.replace(/[.+?^$(){}|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
    return new RegExp(`^${literal}$`).test(resource);
  });
}
