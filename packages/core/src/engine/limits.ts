/** Limits and usage: their schemas (the one source of truth), and the engine's normal forms. */

import * as z from 'zod/mini';
import { ValidationError } from '../errors.js';
import { own } from '../names.js';
import { message } from './messages.js';

// English messages for Sluice's checks only: `z.locales.en()` would pull every locale into a
// Lambda bundle, and even the English one carries words for formats never checked here.
z.config({ localeError: message });

/** Entity and resource identifiers: 1 to 128 characters, starting with a letter or digit. */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$/;
/** Metric names: the standard ones and custom ones share this pattern. */
export const METRIC_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;
/** Limit names; they become attribute names of the bucket item. */
export const LIMIT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The standard metrics; any other name matching {@link METRIC_PATTERN} is a custom metric. */
export const STANDARD_METRICS = [
  'requests',
  'input_tokens',
  'output_tokens',
  'tokens',
  'cost_micro_usd',
] as const;

/** Named periods of a rolling limit, in seconds. */
export const PERIOD_SECONDS = { second: 1, minute: 60, hour: 3_600, day: 86_400 } as const;

/** Longest rolling period: one year. Longer budgets are calendar quotas. */
export const MAX_PERIOD_SECONDS = 366 * 86_400;

/** Largest amount, limit or burst: integers beyond this lose precision in JSON numbers. */
export const MAX_AMOUNT = Number.MAX_SAFE_INTEGER;

/** Most limits one scope may carry (each is an attribute pair of one DynamoDB item). */
export const MAX_LIMITS_PER_SCOPE = 16;

const amount = z.number().check(z.int(), z.minimum(0), z.maximum(MAX_AMOUNT));
const positiveAmount = z.number().check(z.int(), z.minimum(1), z.maximum(MAX_AMOUNT));

/** An entity or resource identifier. */
export const identifierSchema = z.string().check(z.regex(IDENTIFIER_PATTERN));
/** A metric name. */
export const metricSchema = z.string().check(z.regex(METRIC_PATTERN));

/**
 * `shadow`: evaluated and charged like an enforced limit, but it never refuses; a request it
 * would have refused is admitted without charging it, and the answer names it.
 */
const modeSchema = z.optional(z.enum(['enforce', 'shadow']));

/**
 * Most shards one scope may be split into. A settlement is one transaction of at most 100 items,
 * which a refund spread over every shard of one scope still fits (see spill.ts).
 */
export const MAX_SHARDS = 64;

/** A shard count: a power of two from 1 to {@link MAX_SHARDS} (shards are split in halves). */
const shardCount = z.optional(
  z.number().check(
    z.int(),
    z.minimum(1),
    z.maximum(MAX_SHARDS),
    z.refine((n) => (n & (n - 1)) === 0, { message: 'must be a power of two (1, 2, 4 … 64)' }),
  ),
);

/** Most budget alert thresholds one quota may name. */
export const MAX_ALERTS = 10;

/** Budget alert thresholds: shares of a quota's limit, each in (0, 1], at most {@link MAX_ALERTS}. */
export const alertsSchema = z
  .array(z.number().check(z.gt(0), z.lte(1)))
  .check(z.maxLength(MAX_ALERTS));

/** An IANA time zone. */
export const timeZoneSchema = z
  .string()
  .check(z.refine(isTimeZone, { message: 'must be an IANA time zone, e.g. Europe/Berlin' }));

/** A rolling token bucket: `limit` per `per`, holding at most `burst` (default `limit`). */
export const bucketLimitSchema = z.strictObject({
  name: z.string().check(z.regex(LIMIT_NAME_PATTERN)),
  metric: metricSchema,
  limit: positiveAmount,
  per: z.union([
    z.enum(['second', 'minute', 'hour', 'day']),
    z.number().check(z.int(), z.minimum(1), z.maximum(MAX_PERIOD_SECONDS)),
  ]),
  burst: z.optional(positiveAmount),
  mode: modeSchema,
  /** Items the scope's limits are split over (see shards.ts). */
  shards: shardCount,
  /** The most shards the scope may grow to on its own when its items run hot. */
  max_shards: shardCount,
});

/** A calendar quota: at most `limit` per day, ISO week or month in `timezone` (default UTC). */
export const quotaLimitSchema = z.strictObject({
  name: z.string().check(z.regex(LIMIT_NAME_PATTERN)),
  metric: metricSchema,
  limit: positiveAmount,
  window: z.enum(['day', 'week', 'month']),
  timezone: z.optional(timeZoneSchema),
  /** Budget alerts: one event when usage in a window first reaches each share of `limit`. */
  alerts: z.optional(alertsSchema),
  mode: modeSchema,
  shards: shardCount,
  max_shards: shardCount,
});

/** A rolling limit or a calendar quota, as sent over the API. */
export const limitSchema = z.union([bucketLimitSchema, quotaLimitSchema]);
/** The limits of one scope (at most {@link MAX_LIMITS_PER_SCOPE}). */
export const limitsSchema = z.array(limitSchema).check(z.maxLength(MAX_LIMITS_PER_SCOPE));

/**
 * Most metrics one usage may name. Each becomes an attribute of the usage-history rows the
 * aggregator writes in one update, so the number is bounded where it enters.
 */
export const MAX_USAGE_METRICS = 32;

/**
 * Most metrics one lease carries in all: its estimate and every report, with those Sluice derives
 * (`tokens`, `requests`, `cost_micro_usd`). A settlement that would bring it past is refused.
 */
export const MAX_LEASE_METRICS = 40;

/** Usage: metric → non-negative integer, at most {@link MAX_USAGE_METRICS} metrics. */
export const usageSchema = z.record(metricSchema, amount).check(
  z.refine((usage) => Object.keys(usage).length <= MAX_USAGE_METRICS, {
    error: `Too big: expected at most ${MAX_USAGE_METRICS} metrics`,
  }),
);

/** A rolling limit as sent. */
export type BucketLimitInput = z.infer<typeof bucketLimitSchema>;
/** A calendar quota as sent. */
export type QuotaLimitInput = z.infer<typeof quotaLimitSchema>;
/** A limit as sent, before {@link normalizeLimit}. */
export type LimitInput = z.infer<typeof limitSchema>;
/** Usage: metric name → non-negative integer. */
export type Usage = Readonly<Record<string, number>>;

/** A rolling limit, normalized. */
export interface BucketLimit {
  readonly kind: 'bucket';
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly periodSeconds: number;
  readonly burst: number;
  /**
   * When this definition was stored (epoch ms of the configuration document it came from; 0 or
   * absent for inline limits). An item written under a newer definition keeps it: a process
   * still holding an older one adopts the item's instead of converting it back.
   */
  readonly revision?: number;
  /** Never refuses (see {@link bucketLimitSchema}'s `mode`). */
  readonly shadow?: true;
  /**
   * A shard's own view of the limit (shards.ts): its item holds 1/`share` of the rate, and of
   * the burst whole units, those of shard `shardIndex` (the first `burst mod share` one more).
   */
  readonly share?: number;
  readonly shardIndex?: number;
  /** Shards the scope should have, and may grow to (see {@link Sharding}). */
  readonly sharding?: Sharding;
}

/** How a limit asks its scope to be split: `shards` now, up to `max` when its items run hot. */
export interface Sharding {
  readonly shards: number;
  readonly max: number;
}

/** A calendar quota, normalized. */
export interface QuotaLimit {
  readonly kind: 'quota';
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly window: 'day' | 'week' | 'month';
  readonly timezone: string;
  /** Budget alert thresholds, ascending, without duplicates. */
  readonly alerts?: readonly number[];
  /** Never refuses (see {@link bucketLimitSchema}'s `mode`). */
  readonly shadow?: true;
  readonly sharding?: Sharding;
  /** On a shard's view (`limit` its share): the whole limit, which shard, and of how many. */
  readonly shardOf?: { readonly limit: number; readonly index: number; readonly count: number };
}

export type Limit = BucketLimit | QuotaLimit;

/**
 * Time zones found valid. The first `Intl.DateTimeFormat` of a process loads its time zone data
 * (about 11 ms): UTC, every context's default, is known without it.
 */
const KNOWN_ZONES = new Set(['UTC']);

function isTimeZone(zone: string): boolean {
  if (KNOWN_ZONES.has(zone)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    KNOWN_ZONES.add(zone); // at most the few hundred zones there are
    return true;
  } catch {
    return false;
  }
}

/** Turns the first zod issue into a {@link ValidationError} naming the field. */
export function validationErrorFrom(error: z.core.$ZodError, field: string): ValidationError {
  const found = innermost(error.issues[0], []);
  if (!found) return new ValidationError(field, 'invalid');
  const { issue, path } = found;
  if (issue.code === 'unrecognized_keys') {
    return new ValidationError(
      formatPath(field, path),
      `unknown field(s) ${issue.keys.join(', ')}`,
    );
  }
  if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
    return new ValidationError(formatPath(field, path), 'required');
  }
  // Infinity (JSON's 1e400) or NaN (YAML's .nan): "expected number, received number".
  if (issue.code === 'invalid_type' && /expected number, received number$/.test(issue.message))
    return new ValidationError(formatPath(field, path), 'not a finite number');
  return new ValidationError(formatPath(field, path), issue.message);
}

/** Descends into a union error through the branch with the fewest issues: the one meant. */
function innermost(
  issue: z.core.$ZodIssue | undefined,
  prefix: readonly PropertyKey[],
): { issue: z.core.$ZodIssue; path: PropertyKey[] } | undefined {
  if (!issue) return undefined;
  const path = [...prefix, ...issue.path];
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return { issue, path };
  const best = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
  return innermost(best[0], path) ?? { issue, path };
}

/** `limits`, [0, 'burst'] → `limits[0].burst` */
export function formatPath(field: string, path: readonly PropertyKey[]): string {
  let out = field;
  for (const key of path) {
    out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Parses and normalizes limits; throws {@link ValidationError} naming the first bad field. */
export function parseLimits(
  input: unknown,
  field = 'limits',
  defaultAlerts?: readonly number[],
): Limit[] {
  const parsed = limitsSchema.safeParse(input);
  if (!parsed.success) throw validationErrorFrom(parsed.error, field);
  const seen = new Set<string>();
  const limits = parsed.data.map((raw, index) => {
    if (seen.has(raw.name)) {
      throw new ValidationError(`${field}[${index}].name`, `duplicate limit name "${raw.name}"`);
    }
    seen.add(raw.name);
    checkSharding(raw, `${field}[${index}]`);
    return normalizeLimit(raw, defaultAlerts);
  });
  // The limits of one request (inline limits) land on one item.
  const sharder = parsed.data.find(shardsItsItem);
  const alerted = parsed.data.findIndex(hasAlerts);
  if (sharder && alerted >= 0)
    throw new ValidationError(`${field}[${alerted}].alerts`, alertsOnShardedItem(sharder));
  return limits;
}

/** Normalizes one already-validated limit. */
export function normalizeLimit(raw: LimitInput, defaultAlerts?: readonly number[]): Limit {
  const shadow = {
    ...(raw.mode === 'shadow' ? ({ shadow: true } as const) : {}),
    ...shardingAsked(raw),
  };
  if ('window' in raw) {
    // A sharded quota's usage is spread over its items: alerts, which read one item, are off
    // (also for one stored before they were refused). A shadow limit's shards split nothing.
    const asked = shardsItsItem(raw) ? [] : (raw.alerts ?? defaultAlerts ?? []);
    const alerts = [...new Set(asked)].sort((a, b) => a - b);
    return {
      kind: 'quota',
      name: raw.name,
      metric: raw.metric,
      limit: raw.limit,
      window: raw.window,
      timezone: raw.timezone ?? 'UTC',
      ...(alerts.length ? { alerts } : {}),
      ...shadow,
    };
  }
  return {
    kind: 'bucket',
    name: raw.name,
    metric: raw.metric,
    limit: raw.limit,
    periodSeconds: typeof raw.per === 'number' ? raw.per : PERIOD_SECONDS[raw.per],
    burst: raw.burst ?? raw.limit,
    ...shadow,
  };
}

function shardingAsked(raw: LimitInput): { sharding?: Sharding } {
  const shards = raw.shards ?? 1;
  const max = Math.max(raw.max_shards ?? shards, shards);
  return max > 1 ? { sharding: { shards, max } } : {};
}

/**
 * `max_shards` below `shards` is a mistake worth a 400 (`field` names the limit), and so are
 * budget alerts on a quota that may be sharded: each of its items holds part of its usage, and an
 * alert is judged on one item.
 */
export function checkSharding(raw: LimitInput, field: string): void {
  if (raw.max_shards !== undefined && raw.max_shards < (raw.shards ?? 1)) {
    throw new ValidationError(`${field}.max_shards`, `must be at least shards (${raw.shards})`);
  }
  if ('window' in raw && raw.alerts?.length && shardsItsItem(raw))
    throw new ValidationError(
      `${field}.alerts`,
      'budget alerts are not available on a sharded quota',
    );
}

/** Whether a limit as sent may shard the item it lands on: enforced, asking for more than 1 shard. */
export const shardsItsItem = (raw: LimitInput): boolean =>
  raw.mode !== 'shadow' && shardingAsked(raw).sharding !== undefined;

/** Whether a limit as sent is a quota naming budget alerts. */
export const hasAlerts = (raw: LimitInput): boolean =>
  'window' in raw && (raw.alerts?.length ?? 0) > 0;

/**
 * Why a quota's `alerts` are refused beside `sharder`, a limit that may shard the item they both
 * land on (`of`: where it is defined, when not beside the quota): each shard holds a share of the
 * quota, and an alert is judged on one item.
 */
export function alertsOnShardedItem(sharder: LimitInput, of = ''): string {
  const most = Math.max(sharder.shards ?? 1, sharder.max_shards ?? 1);
  return `budget alerts are not available on a quota whose item may be sharded: "${sharder.name}"${of} asks for up to ${most} shards`;
}

/** The amount of `metric` in `usage`, 0 when absent: own properties only (`constructor` is a metric name too). */
export function amountOf(usage: Usage, metric: string): number {
  return own(usage, metric) ?? 0;
}

/** The sum of usages, metric by metric. */
export function sumUsage(...usages: readonly Usage[]): Usage {
  const sums = new Map<string, number>();
  for (const usage of usages)
    for (const [metric, amount] of Object.entries(usage))
      sums.set(metric, (sums.get(metric) ?? 0) + amount);
  return Object.fromEntries(sums);
}

/** Validates usage as given: metric → non-negative integer, nothing derived. */
export function parseUsageMap(input: unknown, field = 'usage'): Usage {
  // A JSON `__proto__` key is an own property the schema would pass over unseen: refused.
  if (typeof input === 'object' && input !== null && Object.hasOwn(input, '__proto__'))
    throw new ValidationError(`${field}.__proto__`, 'not a metric name');
  const parsed = usageSchema.safeParse(input ?? {});
  if (!parsed.success) throw validationErrorFrom(parsed.error, field);
  return { ...parsed.data };
}

/**
 * Parses usage and fills the defaults: `tokens` = `input_tokens` + `output_tokens` when not
 * given, and `requests` = `defaultRequests` when given and `requests` is absent.
 */
export function parseUsage(
  input: unknown,
  field = 'usage',
  defaults: { readonly requests?: number } = {},
): Usage {
  const usage: Record<string, number> = { ...parseUsageMap(input, field) };
  if (
    usage.tokens === undefined &&
    (usage.input_tokens !== undefined || usage.output_tokens !== undefined)
  ) {
    const tokens = (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0);
    if (tokens > MAX_AMOUNT) throw new ValidationError(`${field}.tokens`, 'too large');
    usage.tokens = tokens;
  }
  if (usage.requests === undefined && defaults.requests !== undefined) {
    usage.requests = defaults.requests;
  }
  return usage;
}
