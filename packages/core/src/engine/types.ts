/**
 * What the engine is asked and what it answers: the same shapes whether it is called through
 * {@link Limiter} or through one operation at a time (acquire.ts, settle.ts, available.ts).
 */

import type { Price } from '../catalog/price.js';
import type { EngineTuning } from '../defaults.js';
import type { ItemKey, Store } from '../store/types.js';
import type { Combiner } from './combining.js';
import type { Limit, Usage } from './limits.js';
import type { UsageContext } from './usage-context.js';

/** One scope of a decision: an item and the limits it holds. */
export interface ScopeCheck {
  /** Shown in answers: `entity`, `parent:org-1`, `resource`. */
  readonly scope: string;
  readonly key: ItemKey;
  readonly limits: readonly Limit[];
  /**
   * 1–100: the most of this scope's capacity the request may fill, lowering the request's own
   * priority here (a plan's priority on limits it shares with other callers). @default 100
   */
  readonly priority?: number;
}

/** What {@link Limiter.acquire} is asked. */
export interface AcquireRequest {
  readonly checks: readonly ScopeCheck[];
  /** Estimated usage; `requests` defaults to 1, `tokens` to input + output. */
  readonly usage: Usage;
  /** Wait up to this long (reserving a place in FIFO order) instead of being refused. */
  readonly maxWaitMs?: number;
  /** 1–100 (default 100): the share of each limit's capacity this request may use. */
  readonly priority?: number;
  /** The resource's price: `cost_micro_usd` is derived from the usage (now and at settlement). */
  readonly price?: Price | undefined;
  /** Whom the usage counts for in usage history; without it the decision is not recorded there. */
  readonly context?: UsageContext | undefined;
  /**
   * The request's deadline: once it aborts, nothing more is written and acquire rejects with
   * `DeadlineExceededError`; what it had taken is given back, in the background when the store
   * is slow (`EngineState.idle()` waits for that).
   */
  readonly signal?: AbortSignal | undefined;
}

/** State of one limit after a decision. `remaining` is negative while the limit is in debt. */
export interface LimitStatus {
  readonly scope: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
  readonly resetMs: number;
}

/** A limit that refused a request. `retryAfterMs` is null when it can never fit. */
export interface Violation {
  readonly scope: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
  readonly requested: number;
  readonly retryAfterMs: number | null;
}

/** An admission with its lease, or a refusal as a value. */
export type AcquireResult =
  | {
      readonly allowed: true;
      /**
       * The lease: a signed token (its claims, base64url, and an HMAC-SHA256 of them), not an id
       * to look up. It carries what the acquire took; adjust and release verify it with the
       * signing key it names. Opaque: pass it on whole (hundreds of characters for one scope,
       * up to 32,768 with many scopes and limits). On the wire: `lease_id`.
       */
      readonly leaseId: string;
      /** Wait this long before calling the provider (0 unless `maxWaitMs` reserved a slot). */
      readonly waitMs: number;
      readonly limits: readonly LimitStatus[];
      /** Shadow limits that would have refused (present when any shadow limit applies). */
      readonly shadowViolations?: readonly Violation[];
    }
  | {
      readonly allowed: false;
      /** `exceeds_capacity`: the request is larger than a limit can ever hold. */
      readonly code: 'rate_limited' | 'exceeds_capacity';
      readonly retryAfterMs: number | null;
      readonly violations: readonly Violation[];
      readonly limits: readonly LimitStatus[];
      readonly shadowViolations?: readonly Violation[];
    };

/** What adjust and release answer: the lease's totals now and its limits as last seen. */
export interface SettleResult {
  /** The lease's signed token, as given (see {@link AcquireResult}'s `leaseId`). */
  readonly leaseId: string;
  readonly settled: boolean;
  /** Totals the lease stands at now. */
  readonly usage: Usage;
  readonly limits: readonly LimitStatus[];
  /**
   * True when this answer repeats an earlier one: the same release sent again after the lease
   * was settled by it (nothing was written). Metrics that count settlements skip it.
   */
  readonly repeated?: boolean;
}

/** What `available` answers. */
export interface AvailableResult {
  readonly limits: readonly LimitStatus[];
  /** Until `usage` would fit (0: now), or null when it never can. */
  readonly retryAfterMs: number | null;
}

/** The store, an optional clock, and any {@link EngineTuning} setting to override. */
export interface LimiterOptions extends Partial<EngineTuning> {
  readonly store: Store;
  /** Epoch milliseconds (fractions allowed). @default Date.now */
  readonly clock?: () => number;
  /** Told about failures the caller cannot act on (a compensation that could not be written). */
  readonly onBackgroundError?: (error: unknown) => void;
  /** Told when the signing key item had lost keys this process knows (they are written back). */
  readonly onSigningKeysRestored?: (keyIds: readonly string[]) => void;
  /**
   * Combines concurrent acquires' writes to one item ({@link combineWrites}): for a process that
   * serves many calls at once. {@link Limiter} uses one unless given `combiner: undefined`.
   */
  readonly combiner?: Combiner | undefined;
}
