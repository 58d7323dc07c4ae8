/** Wire types of HTTP API v1, as the SDK hands them to callers (camelCase). */

export type Usage = Readonly<Record<string, number>>;

/** An inline limit: rolling (`per`, with an optional `burst`) or a calendar quota (`window`). */
export type LimitInput =
  | {
      name: string;
      metric: string;
      limit: number;
      per: 'second' | 'minute' | 'hour' | 'day' | number;
      burst?: number;
      /** `shadow`: counted like the others but never refuses (see `shadowViolations`). */
      mode?: 'enforce' | 'shadow';
    }
  | {
      name: string;
      metric: string;
      limit: number;
      window: 'day' | 'week' | 'month';
      timezone?: string;
      /** Budget alert thresholds: shares of `limit`, e.g. [0.5, 0.8, 1]. */
      alerts?: number[];
      mode?: 'enforce' | 'shadow';
    };

/** One limit after a decision; `remaining` is negative while in debt. */
export interface LimitStatus {
  readonly scope: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
  readonly resetMs: number;
}

/** A limit that refused a request; `retryAfterMs` is null when it can never fit. */
export interface Violation {
  readonly scope: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
  readonly requested: number;
  readonly retryAfterMs: number | null;
  /** The resource whose limit refused, when the request named fallbacks. */
  readonly resource?: string;
}

/** What to ask before a call: who, which model, the estimated usage. */
export interface AcquireRequest {
  readonly entity: string;
  readonly resource: string;
  readonly usage: Usage;
  readonly limits?: readonly LimitInput[];
  /** Wait up to this long for a reserved place instead of being refused. */
  readonly maxWaitMs?: number;
  /** 1–100: the share of each limit a request may use. */
  readonly priority?: number;
  /** A batch call (a provider's batch API): priced with the resource's batch discount. */
  readonly batch?: boolean;
  /**
   * Smaller models to fall back to, in order, when `resource` refuses; the answer's `resource`
   * says which one to call. @default the plan's `fallbacks` for `resource`
   */
  readonly fallback?: readonly string[];
}

/**
 * Why an acquire was refused, as Sluice sent it: `rate_limited` (429: retry after
 * `retryAfterMs`); `exceeds_capacity` (larger than a limit can ever hold), `context_too_large`
 * (input tokens over the plan's `max_input_tokens`) or `price_unknown` (a cost limit applies and the
 * resource has no price), each a 422 that no retry changes; with `degraded: true`, `unavailable`
 * (Sluice not reached, or answering 503) or `internal` (Sluice answering 500), when the client
 * fails closed. Open-ended: a newer Sluice may refuse with a code this SDK does not know.
 */
export type AcquireRefusalCode = KnownAcquireRefusalCode | (string & {});

/** The refusal codes this SDK knows (see {@link AcquireRefusalCode}). */
export type KnownAcquireRefusalCode =
  | 'rate_limited'
  | 'exceeds_capacity'
  | 'context_too_large'
  | 'price_unknown'
  | 'unavailable'
  | 'internal';

/** An admission with a lease id, or a refusal; `degraded` when Sluice was unreachable. */
export type AcquireResult =
  | {
      readonly allowed: true;
      /**
       * The lease: a signed token Sluice made (`lease_id` on the wire), not an id it looks up. It
       * carries what the acquire took, so it can be long (hundreds of characters for one scope,
       * up to 32,768 with many scopes and limits): pass it whole to `adjust`, `release` or
       * `stream`, and don't log it whole.
       * When `degraded`, a placeholder that settles nothing.
       */
      readonly leaseId: string;
      readonly waitMs: number;
      /** The resource admitted: the one asked for, or the fallback taken. Call this model. */
      readonly resource: string;
      /** True when a fallback was taken instead of the resource asked for. */
      readonly fellBack: boolean;
      readonly limits: readonly LimitStatus[];
      /** True when Sluice was unreachable and `onUnavailable: 'allow'` let the call through. */
      readonly degraded: boolean;
      /** Shadow limits that would have refused (present when any shadow limit applies). */
      readonly shadowViolations?: readonly Violation[];
      /**
       * Sluice's rate-limit headers (`ratelimit`, `ratelimit-policy`, `x-ratelimit-*`), to pass on
       * to your own callers; absent when Sluice was unreachable.
       */
      readonly headers?: Readonly<Record<string, string>>;
    }
  | {
      readonly allowed: false;
      /** Why, as Sluice sent it: see {@link AcquireRefusalCode}. */
      readonly code: AcquireRefusalCode;
      /** When to retry: a 429's; null for a 422; when degraded, what a 503 asked, if any. */
      readonly retryAfterMs: number | null;
      readonly violations: readonly Violation[];
      readonly limits: readonly LimitStatus[];
      readonly degraded: boolean;
      readonly shadowViolations?: readonly Violation[];
      /** Sluice's `retry-after` and rate-limit headers; absent when Sluice was unreachable. */
      readonly headers?: Readonly<Record<string, string>>;
    };

/** What adjust and release answer. */
export interface SettleResult {
  /** The lease's signed token, as given (see {@link AcquireResult}'s `leaseId`). */
  readonly leaseId: string;
  readonly settled: boolean;
  readonly usage: Usage;
  readonly limits: readonly LimitStatus[];
  /** True when Sluice was unreachable: nothing was recorded. */
  readonly degraded: boolean;
}

/** What remains, and when a usage would fit (null: never). */
export interface AvailableResult {
  readonly limits: readonly LimitStatus[];
  readonly retryAfterMs: number | null;
  readonly degraded: boolean;
}

/** @deprecated The name before 0.2: use {@link LimitStatus} (the same type, named as in core). */
export type LimitState = LimitStatus;
/** @deprecated The name before 0.2: use {@link LimitInput} (the same type, named as in core). */
export type LimitSpec = LimitInput;

/** What {@link SluiceClient.usage} asks: an entity's usage history. */
export interface UsageQuery {
  readonly entity: string;
  /** @default 'day' */
  readonly granularity?: 'hour' | 'day' | 'month';
  /** ISO 8601 date or date-time (or a Date). @default a day, 31 days or a year before `to` */
  readonly from?: string | Date;
  /** @default now */
  readonly to?: string | Date;
  /** One resource; without it, every resource together (`*`). */
  readonly resource?: string;
}

/** One period of usage history. */
export interface UsagePeriod {
  /** Start of the hour (UTC), or of the day or month in the entity's time zone (ISO 8601). */
  readonly periodStart: string;
  readonly resource: string;
  readonly usage: Usage;
  /** Leases counted (one given back unused counts none). */
  readonly leases: number;
  /** Refusals by limit name (`shadow:` for shadow limits' would-be refusals). */
  readonly denied: Readonly<Record<string, number>>;
}

/** An entity's usage history. */
export interface UsageHistory {
  readonly entity: string;
  readonly granularity: 'hour' | 'day' | 'month';
  readonly items: readonly UsagePeriod[];
}

/** A page of a listing; `next` is the cursor of the page after (null: the last). */
export interface Listing<T> {
  readonly items: T[];
  readonly next: string | null;
}
