/**
 * The engine: acquire, adjust, release and available over one or more scope items.
 *
 * - acquire: one conditional UpdateItem per scope item, sent in parallel, no read. The branch
 *   (idle/busy, new/same window) is guessed from the last state this process saw; a failed
 *   condition hands back the old item, which either proves a denial or fixes the guess.
 *   If any item denies, the items that admitted are refunded: a denial consumes nothing.
 * - A request the last state seen proves cannot fit is denied from memory (no write).
 * - adjust/release: one transaction of the lease item and the bucket deltas; the lease item's
 *   condition makes a retried or concurrent duplicate apply exactly once.
 */
import { randomBytes } from 'node:crypto';
import { ENGINE_DEFAULTS, type EngineConfig } from './config.js';
import {
  LeaseSettledError,
  SluiceError,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
import {
  bucketFits,
  bucketStatus,
  bucketWaitNs,
  ceilDiv,
  NS_PER_MS,
  type Plan,
  planBucketConsume,
  planBucketDebt,
  planBucketRefund,
} from './gcra.js';
import {
  type LeaseClaims,
  type LeasedItem,
  type LeasedLimit,
  newLeaseId,
  signLease,
  verifyLease,
} from './lease.js';
import { type Limit, MAX_AMOUNT, parseUsage, type Usage } from './limits.js';
import { type Price, withCost } from './price.js';
import {
  planQuotaConsume,
  planQuotaDebt,
  planQuotaRefund,
  quotaFits,
  quotaStatus,
} from './quota.js';
import { Recent } from './recent.js';
import { itemKeys, TABLE_SCHEMA } from './schema.js';
import type {
  Assignment,
  Condition,
  ItemKey,
  ItemState,
  ItemUpdate,
  Store,
} from './store/types.js';

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

const priorityAt = (check: ScopeCheck, priority: number) =>
  Math.min(priority, check.priority ?? 100);

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
      readonly leaseId: string;
      /** Wait this long before calling the provider (0 unless `maxWaitMs` reserved a slot). */
      readonly waitMs: number;
      readonly limits: readonly LimitStatus[];
    }
  | {
      readonly allowed: false;
      /** `exceeds_capacity`: the request is larger than a limit can ever hold. */
      readonly code: 'rate_limited' | 'exceeds_capacity';
      readonly retryAfterMs: number | null;
      readonly violations: readonly Violation[];
      readonly limits: readonly LimitStatus[];
    };

/** What adjust and release answer: the lease's totals now and its limits as last seen. */
export interface SettleResult {
  readonly leaseId: string;
  readonly settled: boolean;
  /** Totals the lease stands at now. */
  readonly usage: Usage;
  readonly limits: readonly LimitStatus[];
}

/** What {@link Limiter.available} answers. */
export interface AvailableResult {
  readonly limits: readonly LimitStatus[];
  /** Until `usage` would fit (0: now), or null when it never can. */
  readonly retryAfterMs: number | null;
}

/** The store, an optional clock, and any {@link EngineConfig} setting to override. */
export interface LimiterOptions extends Partial<EngineConfig> {
  readonly store: Store;
  /** Epoch milliseconds (fractions allowed). @default Date.now */
  readonly clock?: () => number;
  /** Told about failures the caller cannot act on (a compensation that could not be written). */
  readonly onBackgroundError?: (error: unknown) => void;
}

interface Seen {
  readonly state: ItemState;
  readonly atMs: number;
}

interface LeaseRecord {
  readonly totals: string;
  readonly settled: boolean;
  readonly fingerprint?: string;
}

type ItemPlan =
  | { readonly kind: 'deny'; readonly violations: Violation[] }
  | { readonly kind: 'write'; readonly update: ItemUpdate }
  | { readonly kind: 'none' };

type ConsumeOutcome =
  | { readonly kind: 'ok'; readonly state: ItemState }
  | { readonly kind: 'denied'; readonly violations: Violation[] }
  | { readonly kind: 'contended' };

const keyOf = (key: ItemKey): string => `${key.pk}\u0000${key.sk}`;
const toNs = (ms: number): bigint => BigInt(Math.round(ms * 1_000)) * 1_000n;
const nsToMs = (ns: bigint): number => Number(ceilDiv(ns, NS_PER_MS));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Decides whether calls may go ahead, against limits stored as DynamoDB items.
 *
 * @example
 * const limiter = new Limiter({ store: new DynamoDBStore({ client, tableName: 'sluice' }) });
 * const limits = parseLimits([{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }]);
 * const result = await limiter.acquire({
 *   checks: [{ scope: 'entity', key: itemKeys.entityBucket('key-123', 'gpt-4o'), limits }],
 *   usage: { input_tokens: 1_500, output_tokens: 500 },
 * });
 * if (result.allowed) {
 *   // ... call the model, then report what it really used:
 *   await limiter.release(result.leaseId, { input_tokens: 1_480, output_tokens: 870 });
 * }
 */
export class Limiter {
  readonly #store: Store;
  readonly #clock: () => number;
  readonly #config: EngineConfig;
  readonly #onBackgroundError: (error: unknown) => void;
  readonly #seen: Recent<Seen>;
  readonly #leases: Recent<LeaseRecord>;
  #signingKey: Promise<Buffer> | undefined;

  constructor(options: LimiterOptions) {
    const { store, clock, onBackgroundError, ...config } = options;
    this.#store = store;
    this.#clock = clock ?? Date.now;
    this.#config = { ...ENGINE_DEFAULTS, ...config };
    this.#onBackgroundError = onBackgroundError ?? (() => {});
    this.#seen = new Recent(this.#config.cacheSize);
    this.#leases = new Recent(this.#config.cacheSize);
  }

  /** Asks to take `usage` from every limit of every check, atomically per decision. */
  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const usage = withCost(parseUsage(request.usage, 'usage', { requests: 1 }), request.price);
    const priority = integerIn(request.priority ?? 100, 'priority', 1, 100);
    const maxWaitMs = integerIn(
      request.maxWaitMs ?? 0,
      'max_wait_ms',
      0,
      this.#config.maxWaitMsCeiling,
    );
    const checks = validChecks(request.checks);
    const signingKey = await this.#key(); // before any write: a failure here changes nothing
    const nowMs = this.#clock();
    const nowNs = toNs(nowMs);
    const consume = { priority, maxWaitNs: BigInt(maxWaitMs) * NS_PER_MS };

    const tooLarge = checks.flatMap((check) =>
      check.limits
        .filter((limit) => {
          const amount = usage[limit.metric] ?? 0;
          const at = priorityAt(check, priority);
          return limit.kind === 'bucket'
            ? !bucketFits(limit, amount, at)
            : !quotaFits(limit, amount, at);
        })
        .map((limit) =>
          this.#violation(
            check,
            limit,
            this.#seen.get(keyOf(check.key))?.state,
            nowMs,
            usage,
            null,
          ),
        ),
    );
    if (tooLarge.length > 0) {
      return {
        allowed: false,
        code: 'exceeds_capacity',
        retryAfterMs: null,
        violations: tooLarge,
        limits: this.#remembered(checks, nowMs),
      };
    }

    const first = checks.map((check) => {
      const seen = this.#seen.get(keyOf(check.key));
      const mayDeny = seen !== undefined && nowMs - seen.atMs <= this.#config.cacheDenyMaxAgeMs;
      return this.#planConsume(check, seen?.state, nowMs, nowNs, usage, { ...consume, mayDeny });
    });
    const deniedFromMemory = first.flatMap((plan) => (plan.kind === 'deny' ? plan.violations : []));
    if (deniedFromMemory.length > 0) return this.#denial(checks, deniedFromMemory, nowMs);

    const outcomes = await Promise.all(
      checks.map(async (check, i): Promise<ConsumeOutcome> => {
        let plan = first[i] as ItemPlan;
        for (let attempt = 0; attempt < this.#config.maxAttempts; attempt++) {
          if (plan.kind === 'deny') return { kind: 'denied', violations: plan.violations };
          if (plan.kind === 'none') return { kind: 'ok', state: {} };
          const result = await this.#store.update(plan.update);
          const state = result.item ?? {};
          this.#remember(check.key, state);
          if (result.ok) return { kind: 'ok', state };
          plan = this.#planConsume(check, state, nowMs, nowNs, usage, {
            ...consume,
            mayDeny: true,
          });
        }
        return { kind: 'contended' };
      }),
    );

    if (outcomes.every((o) => o.kind === 'ok')) {
      const states = outcomes.map((o) => (o.kind === 'ok' ? o.state : {}));
      const claims: LeaseClaims = {
        id: newLeaseId(),
        expiresAtMs: Math.floor(nowMs) + this.#config.leaseTtlMs,
        usage,
        items: checks.map((check, i) => leasedItem(check, states[i] ?? {}, nowMs)),
        ...(request.price ? { price: request.price } : {}),
      };
      let waitNs = 0n;
      checks.forEach((check, i) => {
        for (const limit of check.limits) {
          if (limit.kind !== 'bucket') continue;
          const wait = bucketWaitNs(limit, states[i] ?? {}, nowNs, priorityAt(check, priority));
          if (wait > waitNs) waitNs = wait;
        }
      });
      return {
        allowed: true,
        leaseId: signLease(claims, signingKey),
        waitMs: nsToMs(waitNs),
        limits: checks.flatMap((check, i) =>
          this.#statuses(check.scope, check.limits, states[i], nowMs),
        ),
      };
    }

    // Give back what the admitting items took, then refuse.
    await Promise.all(
      outcomes.map((outcome, i) => {
        const check = checks[i];
        if (outcome.kind !== 'ok' || !check) return undefined;
        const zero = Object.fromEntries(Object.keys(usage).map((metric) => [metric, 0]));
        return this.#applyDeltas(leasedItem(check, outcome.state, nowMs), usage, zero, nowMs).catch(
          (error: unknown) => this.#onBackgroundError(error),
        );
      }),
    );
    const violations = outcomes.flatMap((o) => (o.kind === 'denied' ? o.violations : []));
    return this.#denial(checks, violations, nowMs);
  }

  /**
   * Reports the lease's actual usage so far (totals, not increments). Metrics left out keep the
   * value they had at acquire time. May be called repeatedly while a stream runs.
   */
  async adjust(leaseId: string, usage: Usage): Promise<SettleResult> {
    const claims = verifyLease(leaseId, await this.#key(), this.#clock());
    return this.#settle(leaseId, claims, totalsFrom(claims, usage), false);
  }

  /**
   * Settles a lease with its final totals, or, without `usage`, cancels it: everything it took
   * is given back (the call failed and cost nothing).
   */
  async release(leaseId: string, usage?: Usage): Promise<SettleResult> {
    const claims = verifyLease(leaseId, await this.#key(), this.#clock());
    const totals =
      usage === undefined
        ? Object.fromEntries(Object.keys(claims.usage).map((metric) => [metric, 0]))
        : totalsFrom(claims, usage);
    return this.#settle(leaseId, claims, totals, true, usage === undefined ? 'cancel' : 'final');
  }

  /**
   * Forgets what this process last saw of every item, so nothing is denied from memory: for a
   * reset (its buckets were deleted) served by the same process.
   */
  forget(): void {
    this.#seen.clear();
  }

  /** What remains of every limit, and when `usage` would fit; consumes nothing. */
  async available(request: {
    checks: readonly ScopeCheck[];
    usage?: Usage;
    price?: Price | undefined;
  }): Promise<AvailableResult> {
    const given = parseUsage(request.usage ?? {}, 'usage');
    const usage = request.usage ? withCost(given, request.price) : given;
    const checks = validChecks(request.checks);
    const states = await Promise.all(checks.map((check) => this.#store.get(check.key)));
    const nowMs = this.#clock();
    const nowNs = toNs(nowMs);
    let retryAfterNs = 0n;
    let never = false;
    checks.forEach((check, i) => {
      const state = states[i] ?? {};
      this.#remember(check.key, state);
      for (const limit of check.limits) {
        const amount = usage[limit.metric] ?? 0;
        if (
          limit.kind === 'bucket' ? !bucketFits(limit, amount, 100) : !quotaFits(limit, amount, 100)
        ) {
          never = true;
          continue;
        }
        const plan = this.#planLimitConsume(limit, state, nowMs, nowNs, amount, {
          priority: 100,
          maxWaitNs: 0n,
          mayDeny: true,
        });
        if (plan.kind === 'deny' && plan.retryAfterNs > retryAfterNs)
          retryAfterNs = plan.retryAfterNs;
      }
    });
    return {
      limits: checks.flatMap((check, i) =>
        this.#statuses(check.scope, check.limits, states[i] ?? {}, nowMs),
      ),
      retryAfterMs: never ? null : nsToMs(retryAfterNs),
    };
  }

  async #settle(
    leaseId: string,
    claims: LeaseClaims,
    totals: Usage,
    final: boolean,
    kind?: 'cancel' | 'final',
  ): Promise<SettleResult> {
    const leaseKey = itemKeys.lease(claims.id);
    const target = canonical(totals);
    const fingerprint = final ? `${kind}:${target}` : undefined;
    let record = this.#leases.get(claims.id);

    for (let attempt = 0; attempt < this.#config.maxSettleAttempts; attempt++) {
      const nowMs = this.#clock();
      if (record?.settled) {
        if (fingerprint !== undefined && record.fingerprint === fingerprint) {
          return this.#settled(leaseId, claims, totals, true, nowMs); // the same release again
        }
        throw new LeaseSettledError();
      }
      const previous: Usage = record ? (JSON.parse(record.totals) as Usage) : claims.usage;
      if (!final && record && record.totals === target) {
        return this.#settled(leaseId, claims, totals, false, nowMs); // the same adjust again
      }

      const next: LeaseRecord = {
        totals: target,
        settled: final,
        ...(fingerprint ? { fingerprint } : {}),
      };
      const leaseUpdate: ItemUpdate = {
        key: leaseKey,
        set: [
          { attr: 't', value: target },
          { attr: 'st', value: final ? 1n : 0n },
          ...(fingerprint ? [{ attr: 'f', value: fingerprint }] : []),
          {
            attr: TABLE_SCHEMA.ttlAttribute,
            value: BigInt(Math.ceil(claims.expiresAtMs / 1000) + 86_400),
          },
        ],
        condition: record
          ? {
              and: [
                { attr: 't', op: '=', value: record.totals },
                { attr: 'st', op: '=', value: 0n },
              ],
            }
          : { absent: TABLE_SCHEMA.partitionKey },
      };
      const itemUpdates = claims.items.flatMap((item) => {
        const update = this.#deltaUpdate(item, previous, totals, nowMs);
        return update ? [{ item, update }] : [];
      });

      if (!final && itemUpdates.length === 0 && !record) {
        // Nothing moved and nothing was recorded before: there is nothing to write.
        return this.#settled(leaseId, claims, totals, false, nowMs);
      }

      if (itemUpdates.length === 0) {
        const result = await this.#store.update(leaseUpdate);
        if (result.ok) {
          this.#leases.set(claims.id, next);
          return this.#settled(leaseId, claims, totals, final, nowMs);
        }
        record = leaseRecordFrom(result.item);
        continue;
      }

      const result = await this.#store.transact([leaseUpdate, ...itemUpdates.map((u) => u.update)]);
      if (result.ok) {
        this.#leases.set(claims.id, next);
        for (const { item, update } of itemUpdates) {
          const seen = this.#seen.get(keyOf(item.key));
          if (seen) this.#remember(item.key, applyLocally(seen.state, update.set));
        }
        return this.#settled(leaseId, claims, totals, final, nowMs);
      }
      let conflict = false;
      result.failures.forEach((failure, i) => {
        if (failure.reason === 'conflict') conflict = true;
        if (failure.reason !== 'condition') return;
        if (i === 0) record = leaseRecordFrom(failure.item);
        else {
          const item = itemUpdates[i - 1]?.item;
          if (item) this.#remember(item.key, failure.item ?? {});
        }
      });
      if (conflict) await sleep(Math.random() * 5 * 2 ** attempt);
    }
    throw new StoreUnavailableError('lease settlement kept conflicting; retry');
  }

  #settled(
    leaseId: string,
    claims: LeaseClaims,
    totals: Usage,
    settled: boolean,
    nowMs: number,
  ): SettleResult {
    return {
      leaseId,
      settled,
      usage: totals,
      limits: claims.items.flatMap((item) =>
        this.#statuses(item.scope, item.limits, this.#seen.get(keyOf(item.key))?.state, nowMs),
      ),
    };
  }

  /** The update that moves one item from `previous` to `next` totals, or null if none moves. */
  #deltaUpdate(item: LeasedItem, previous: Usage, next: Usage, nowMs: number): ItemUpdate | null {
    const state = this.#seen.get(keyOf(item.key))?.state;
    const nowNs = toNs(nowMs);
    const plans: Plan[] = item.limits.map((limit) => {
      const delta = BigInt(next[limit.metric] ?? 0) - BigInt(previous[limit.metric] ?? 0);
      if (delta === 0n) return { kind: 'skip' };
      if (limit.kind === 'bucket') {
        return delta > 0n
          ? planBucketDebt(limit, state, nowNs, delta)
          : planBucketRefund(limit, state, nowNs, -delta);
      }
      return delta > 0n
        ? planQuotaDebt(limit, state, nowMs, delta)
        : planQuotaRefund(limit, state, nowMs, -delta);
    });
    return combine(item.key, plans, this.#ttlSeconds(item.limits, state, nowMs, 0n));
  }

  /** Applies deltas outside a lease (compensation), retrying on stale state. */
  async #applyDeltas(item: LeasedItem, previous: Usage, next: Usage, nowMs: number): Promise<void> {
    for (let attempt = 0; attempt < this.#config.maxAttempts; attempt++) {
      const update = this.#deltaUpdate(item, previous, next, nowMs);
      if (!update) return;
      const result = await this.#store.update(update);
      this.#remember(item.key, result.item ?? {});
      if (result.ok) return;
    }
    throw new StoreUnavailableError('compensation kept failing its condition');
  }

  #planConsume(
    check: ScopeCheck,
    state: ItemState | undefined,
    nowMs: number,
    nowNs: bigint,
    usage: Usage,
    options: { priority: number; maxWaitNs: bigint; mayDeny: boolean },
  ): ItemPlan {
    const at = { ...options, priority: priorityAt(check, options.priority) };
    const plans = check.limits.map((limit) =>
      this.#planLimitConsume(limit, state, nowMs, nowNs, usage[limit.metric] ?? 0, at),
    );
    const violations = check.limits.flatMap((limit, i) => {
      const plan = plans[i];
      return plan?.kind === 'deny'
        ? [this.#violation(check, limit, state, nowMs, usage, nsToMs(plan.retryAfterNs))]
        : [];
    });
    if (violations.length > 0) return { kind: 'deny', violations };
    const update = combine(
      check.key,
      plans,
      this.#ttlSeconds(check.limits, state, nowMs, options.maxWaitNs),
    );
    return update ? { kind: 'write', update } : { kind: 'none' };
  }

  #planLimitConsume(
    limit: Limit,
    state: ItemState | undefined,
    nowMs: number,
    nowNs: bigint,
    amount: number,
    options: { priority: number; maxWaitNs: bigint; mayDeny: boolean },
  ): Plan {
    return limit.kind === 'bucket'
      ? planBucketConsume(limit, state, nowNs, amount, options)
      : planQuotaConsume(limit, state, nowMs, amount, options);
  }

  /**
   * When the item may expire: after every bucket has refilled (including known debt and
   * reservations) and every quota window has ended, plus a day.
   */
  #ttlSeconds(
    limits: readonly Limit[],
    state: ItemState | undefined,
    nowMs: number,
    maxWaitNs: bigint,
  ): bigint {
    let horizonMs = 0;
    const nowNs = toNs(nowMs);
    for (const limit of limits) {
      if (limit.kind === 'bucket') {
        const refillMs = (limit.periodSeconds * 1000 * limit.burst) / limit.limit;
        const backlogMs = nsToMs(bucketStatus(limit, state, nowNs).resetNs);
        horizonMs = Math.max(horizonMs, refillMs + backlogMs + Number(maxWaitNs / NS_PER_MS));
      } else {
        horizonMs = Math.max(horizonMs, quotaStatus(limit, state, nowMs).resetMs);
      }
    }
    return BigInt(Math.ceil((nowMs + horizonMs) / 1000) + this.#config.ttlSlackSeconds);
  }

  #statuses(
    scope: string,
    limits: readonly Limit[],
    state: ItemState | undefined,
    nowMs: number,
  ): LimitStatus[] {
    const nowNs = toNs(nowMs);
    return limits.map((limit) => {
      if (limit.kind === 'bucket') {
        const status = bucketStatus(limit, state, nowNs);
        return {
          scope,
          name: limit.name,
          metric: limit.metric,
          limit: limit.limit,
          remaining: Number(status.remaining),
          resetMs: nsToMs(status.resetNs),
        };
      }
      const status = quotaStatus(limit, state, nowMs);
      return {
        scope,
        name: limit.name,
        metric: limit.metric,
        limit: limit.limit,
        remaining: Number(status.remaining),
        resetMs: status.resetMs,
      };
    });
  }

  #violation(
    check: ScopeCheck,
    limit: Limit,
    state: ItemState | undefined,
    nowMs: number,
    usage: Usage,
    retryAfterMs: number | null,
  ): Violation {
    const [status] = this.#statuses(check.scope, [limit], state, nowMs);
    return {
      scope: check.scope,
      name: limit.name,
      metric: limit.metric,
      limit: limit.limit,
      remaining: status?.remaining ?? limit.limit,
      requested: usage[limit.metric] ?? 0,
      retryAfterMs,
    };
  }

  #denial(checks: readonly ScopeCheck[], violations: Violation[], nowMs: number): AcquireResult {
    // No violation means every attempt lost a race on the branch guess: try again at once.
    const retryAfterMs = violations.reduce(
      (most, v) => Math.max(most, v.retryAfterMs ?? 0),
      violations.length ? 0 : 1,
    );
    return {
      allowed: false,
      code: 'rate_limited',
      retryAfterMs,
      violations,
      limits: this.#remembered(checks, nowMs),
    };
  }

  /** Statuses of every limit as this process last saw them. */
  #remembered(checks: readonly ScopeCheck[], nowMs: number): LimitStatus[] {
    return checks.flatMap((check) =>
      this.#statuses(check.scope, check.limits, this.#seen.get(keyOf(check.key))?.state, nowMs),
    );
  }

  #remember(key: ItemKey, state: ItemState): void {
    this.#seen.set(keyOf(key), { state, atMs: this.#clock() });
  }

  /** The shared signing key: read once per process, created once per table. */
  #key(): Promise<Buffer> {
    if (!this.#signingKey) {
      this.#signingKey = this.#store
        .putIfAbsent(itemKeys.leaseSigningKey(), { secret: randomBytes(32).toString('base64') })
        .then((item) => {
          const secret = item.secret;
          if (typeof secret !== 'string')
            throw new SluiceError('internal', 'lease signing key item is malformed');
          return Buffer.from(secret, 'base64');
        });
      this.#signingKey.catch(() => {
        this.#signingKey = undefined;
      });
    }
    return this.#signingKey;
  }
}

/** What a lease remembers of a check: its limits, each quota with the window it was charged in. */
function leasedItem(check: ScopeCheck, state: ItemState, nowMs: number): LeasedItem {
  return {
    key: check.key,
    scope: check.scope,
    limits: check.limits.map(
      (limit): LeasedLimit =>
        limit.kind === 'bucket'
          ? limit
          : { ...limit, windowStartMs: quotaStatus(limit, state, nowMs).windowStartMs },
    ),
  };
}

function integerIn(value: number, field: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

function validChecks(checks: readonly ScopeCheck[]): readonly ScopeCheck[] {
  if (checks.length === 0) throw new ValidationError('limits', 'no limits apply to this request');
  const keys = new Set(checks.map((check) => keyOf(check.key)));
  if (keys.size !== checks.length) throw new ValidationError('limits', 'two scopes share one item');
  for (const check of checks) {
    if (check.priority !== undefined) integerIn(check.priority, 'priority', 1, 100);
  }
  return checks;
}

/**
 * Lease totals after an adjust: left-out metrics keep their acquire-time value, and with a price
 * the cost follows the token totals.
 */
function totalsFrom(claims: LeaseClaims, reported: Usage): Usage {
  const given = parseUsage(reported, 'usage');
  const totals: Record<string, number> = { ...claims.usage, ...given };
  const splitGiven = reported.input_tokens !== undefined || reported.output_tokens !== undefined;
  if (reported.tokens === undefined && splitGiven) {
    totals.tokens = (totals.input_tokens ?? 0) + (totals.output_tokens ?? 0);
    if (totals.tokens > MAX_AMOUNT) throw new ValidationError('usage.tokens', 'too large');
  }
  return withCost(totals, claims.price);
}

function canonical(usage: Usage): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(usage).sort(([a], [b]) => (a < b ? -1 : 1))),
  );
}

function leaseRecordFrom(item: ItemState | undefined): LeaseRecord | undefined {
  if (!item) return undefined;
  const { t, st, f } = item;
  if (typeof t !== 'string') return undefined;
  return { totals: t, settled: st === 1n, ...(typeof f === 'string' ? { fingerprint: f } : {}) };
}

/** One update from the per-limit plans of an item (skips contribute nothing). */
function combine(key: ItemKey, plans: readonly Plan[], ttlSeconds: bigint): ItemUpdate | null {
  const set: Assignment[] = [];
  const conditions: Condition[] = [];
  for (const plan of plans) {
    if (plan.kind !== 'write') continue;
    set.push(...plan.set);
    if (plan.condition) conditions.push(plan.condition);
  }
  if (set.length === 0) return null;
  set.push({ attr: TABLE_SCHEMA.ttlAttribute, value: ttlSeconds });
  const [only] = conditions;
  if (conditions.length === 0 || !only) return { key, set };
  return { key, set, condition: conditions.length === 1 ? only : { and: conditions } };
}

/** What a successful update did to an item, applied to a remembered copy. */
function applyLocally(state: ItemState, set: readonly Assignment[]): ItemState {
  const next: Record<string, bigint | string> = { ...state };
  for (const a of set) {
    if ('value' in a) next[a.attr] = a.value;
    else {
      const current = next[a.attr];
      const base = typeof current === 'bigint' ? current : 'base' in a ? a.base : 0n;
      next[a.attr] = base + ('add' in a ? a.add : a.addToExisting);
    }
  }
  return next;
}
