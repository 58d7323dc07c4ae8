/** Wire types of HTTP API v1, as the SDK hands them to callers (camelCase). */

export type Usage = Readonly<Record<string, number>>;

/** An inline limit: rolling (`per`) or calendar (`window`), as DESIGN.md §5 defines it. */
export type LimitInput =
  | {
      name: string;
      metric: string;
      limit: number;
      per: 'second' | 'minute' | 'hour' | 'day' | number;
      burst?: number;
    }
  | {
      name: string;
      metric: string;
      limit: number;
      window: 'day' | 'week' | 'month';
      timezone?: string;
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
}

/** An admission with a lease id, or a refusal; `degraded` when Sluice was unreachable. */
export type AcquireResult =
  | {
      readonly allowed: true;
      readonly leaseId: string;
      readonly waitMs: number;
      readonly limits: readonly LimitStatus[];
      /** True when Sluice was unreachable and `onUnavailable: 'allow'` let the call through. */
      readonly degraded: boolean;
    }
  | {
      readonly allowed: false;
      /** `exceeds_capacity`: larger than a limit can ever hold; `unavailable`: Sluice unreachable. */
      readonly code: 'rate_limited' | 'exceeds_capacity' | 'unavailable';
      readonly retryAfterMs: number | null;
      readonly violations: readonly Violation[];
      readonly limits: readonly LimitStatus[];
      readonly degraded: boolean;
    };

/** What adjust and release answer. */
export interface SettleResult {
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
