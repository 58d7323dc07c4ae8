/**
 * The usage aggregator: reads the table's change stream (a Lambda on DynamoDB Streams in AWS,
 * a poller of DynamoDB Local's stream locally) and rolls what the hot path wrote into usage
 * history, off the hot path.
 *
 * What it reads, and where it comes from:
 * - an acquire leaves a usage event (lease id, estimate, context) on the first item it writes;
 *   a refused acquire that had written it leaves a cancellation there;
 * - a settlement writes the lease's totals, version and context on the lease item;
 * - a process writes each gathering of refusals as an item of its own (see denials.ts).
 * Each is a fact "lease L stands at totals T as of version V". A per-lease record keeps the
 * version and totals already counted, and each fact adds `T − counted` to the rows in the same
 * transaction that moves the record, conditional on the version read. So a replayed, duplicated
 * or reordered record changes nothing (an older version than counted is skipped), two readers
 * of one stream count once, and a lease counts its final totals in the period it was acquired.
 *
 * Budget alerts come from the same records: see alerts.ts.
 *
 * How counting stands (when it last counted, how far behind, whether it is failing) goes in one
 * progress item, for the health check: see {@link UsageProgress}.
 */
import { randomBytes } from 'node:crypto';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { SERVICE_DEFAULTS } from '../defaults.js';
import { amountOf, PERIOD_SECONDS, type Usage } from '../engine/limits.js';
import { sleep } from '../engine/state.js';
import {
  CANCELLED,
  type ContextWire,
  contextFromWire,
  type UsageContext,
  type UsageEvent,
} from '../engine/usage-context.js';
import { StoreUnavailableError } from '../errors.js';
import { own } from '../names.js';
import { unmarshal } from '../store/dynamodb.js';
import {
  denialAttributes,
  itemAttributes,
  itemKeys,
  leaseAttributes,
  progressAttributes as P,
  TABLE_SCHEMA,
  usageAttributes as U,
  usageKeys,
} from '../store/schema.js';
import type { AdminStore, ItemKey, ItemState, ItemUpdate, Store } from '../store/types.js';
import { type AlertSender, crossingsOf, recordAlerts } from './alerts.js';
import type { DenialBatch } from './denials.js';
import { addDeltas, type RowDelta, type RowWrite, rowAssignments, rowsFor } from './periods.js';

/** One change of one item, as a stream record carries it. */
export interface ItemChange {
  readonly key: ItemKey;
  readonly oldImage?: ItemState | undefined;
  readonly newImage?: ItemState | undefined;
}

/** A stream record, as Lambda's DynamoDB event and the DynamoDB Streams API both carry it. */
export interface StreamRecord {
  readonly dynamodb?: {
    readonly Keys?: Record<string, unknown>;
    readonly OldImage?: Record<string, unknown>;
    readonly NewImage?: Record<string, unknown>;
  };
}

/** The change a stream record describes (none for a record without keys). */
export function changeOf(record: StreamRecord): ItemChange | undefined {
  const image = (raw: Record<string, unknown> | undefined) =>
    unmarshal(raw as Record<string, AttributeValue> | undefined);
  const keys = image(record.dynamodb?.Keys);
  if (!keys) return undefined;
  return {
    key: {
      pk: String(keys[TABLE_SCHEMA.partitionKey]),
      sk: String(keys[TABLE_SCHEMA.sortKey]),
    },
    oldImage: image(record.dynamodb?.OldImage),
    newImage: image(record.dynamodb?.NewImage),
  };
}

/** Where a lease's usage stands, as one record says. */
export interface LeaseFact {
  readonly leaseId: string;
  /** 0: the acquire's estimate; n: the n-th settlement; MAX_SAFE_INTEGER: cancelled. */
  readonly version: number;
  readonly totals: Usage;
  readonly acquiredAtMs: number;
  /** Until when the lease can still change (its record is kept a while longer). */
  readonly expiresAtMs: number;
  readonly context: UsageContext;
  /** Refusals by limit name (a gathering of refusals, which has no usage). */
  readonly denied?: Usage;
}

const DENIALS_PREFIX = itemKeys.denials('').pk;
const LEASE_PREFIX = itemKeys.lease('').pk;
/** How long a per-lease record outlives its lease (stream records are kept 24 hours). */
const RECORD_SLACK_S = 2 * PERIOD_SECONDS.day;
/** Items of one DynamoDB transaction. */
const MAX_TRANSACTION_ITEMS = 100;

/** The lease facts one change carries (none, one or two). */
export function factsOf(change: ItemChange): LeaseFact[] {
  const next = change.newImage;
  if (!next) return [];
  const facts: LeaseFact[] = [];
  const c = next[leaseAttributes.context];
  const t = next[leaseAttributes.totals];
  const n = next[leaseAttributes.version];
  const ttl = next[TABLE_SCHEMA.ttlAttribute];
  if (change.key.pk.startsWith(LEASE_PREFIX) && typeof c === 'string' && typeof t === 'string') {
    const [acquiredAtMs, context] = JSON.parse(c) as [number, ContextWire];
    facts.push({
      leaseId: change.key.pk.slice(LEASE_PREFIX.length),
      version: typeof n === 'bigint' ? Number(n) : 1,
      totals: JSON.parse(t) as Usage,
      acquiredAtMs,
      expiresAtMs: typeof ttl === 'bigint' ? Number(ttl) * 1_000 : acquiredAtMs,
      context: contextFromWire(context),
    });
  }
  const dn = next[denialAttributes.batch];
  if (change.key.pk.startsWith(DENIALS_PREFIX) && typeof dn === 'string') {
    const [startMs, counts, context] = JSON.parse(dn) as DenialBatch;
    facts.push({
      leaseId: `denied.${change.key.pk.slice(DENIALS_PREFIX.length)}`,
      version: 1,
      totals: {},
      acquiredAtMs: startMs,
      expiresAtMs: typeof ttl === 'bigint' ? Number(ttl) * 1_000 : startMs,
      context: contextFromWire(context),
      denied: counts,
    });
  }
  const ev = next[itemAttributes.usageEvent];
  if (typeof ev === 'string' && ev !== change.oldImage?.[itemAttributes.usageEvent]) {
    const [leaseId, version, acquiredAtMs, expiresAtMs, usage, context] = JSON.parse(
      ev,
    ) as UsageEvent;
    const cancelled = version === CANCELLED;
    facts.push({
      leaseId,
      version: cancelled ? Number.MAX_SAFE_INTEGER : version,
      totals: cancelled ? {} : usage,
      acquiredAtMs,
      expiresAtMs,
      context: contextFromWire(context),
    });
  }
  return facts;
}

/** What the aggregator writes with and to whom it sends budget alerts. */
export interface AggregatorOptions {
  readonly store: AdminStore;
  readonly clock?: () => number;
  /** @default SERVICE_DEFAULTS.usageRetentionDays */
  readonly retentionDays?: number;
  /** Sends a budget alert (EventBridge in AWS, a webhook locally); absent: alerts are only listed. */
  readonly sendAlert?: AlertSender;
  /**
   * What a failed send does: `retry` fails the batch so the stream delivers it again (AWS);
   * `keep` leaves the alert listed as undelivered and goes on (local).
   * @default 'retry'
   */
  readonly onSendFailure?: 'retry' | 'keep';
  /** Told about an alert that could not be sent (with `keep`). */
  readonly onError?: (error: unknown) => void;
  /** Conflicting transactions before a batch fails. @default 8 */
  readonly maxAttempts?: number;
}

/** What one {@link UsageAggregator.apply} wrote. */
export interface ApplyReport {
  /** Leases (and gatherings of refusals) the batch spoke of. */
  readonly leases: number;
  readonly transactions: number;
  /** Budget alerts created. */
  readonly alerts: number;
  /** What this call added to usage history, per metric, and to leases counted. */
  readonly counted: { readonly usage: Usage; readonly leases: number };
}

/**
 * @example
 * const aggregator = new UsageAggregator({ store });
 * await aggregator.apply(changes); // safe to call again with the same changes
 */
export class UsageAggregator {
  readonly #store: AdminStore;
  readonly #clock: () => number;
  readonly #retentionDays: number;
  readonly #options: AggregatorOptions;
  /** This aggregator's id as a sender of budget alerts. */
  readonly #claimer = randomBytes(9).toString('base64url');

  constructor(options: AggregatorOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#retentionDays = options.retentionDays ?? SERVICE_DEFAULTS.usageRetentionDays;
    this.#options = options;
  }

  /** Counts a batch of changes exactly once; throws (changing nothing more) if it cannot. */
  async apply(changes: readonly ItemChange[]): Promise<ApplyReport> {
    const latest = new Map<string, LeaseFact>();
    for (const fact of changes.flatMap(factsOf)) {
      const seen = latest.get(fact.leaseId);
      if (!seen || fact.version > seen.version) latest.set(fact.leaseId, fact);
    }
    const alerts = await recordAlerts(this.#store, changes.flatMap(crossingsOf), {
      clock: this.#clock,
      claimer: this.#claimer,
      ...(this.#options.sendAlert ? { send: this.#options.sendAlert } : {}),
      onSendFailure: this.#options.onSendFailure ?? 'retry',
      onError: this.#options.onError ?? (() => {}),
    });
    let pending = [...latest.values()];
    let transactions = 0;
    const usage = new Map<string, number>();
    let leases = 0;
    const attempts = this.#options.maxAttempts ?? 8;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= attempts)
        throw new StoreUnavailableError('usage aggregation kept conflicting; retry');
      if (attempt > 0) await sleep(Math.random() * 10 * 2 ** attempt);
      const planned = await Promise.all(pending.map((fact) => this.#plan(fact)));
      const retry: LeaseFact[] = [];
      for (const chunk of chunks(planned.filter((p) => p !== undefined))) {
        transactions++;
        const result = await this.#store.transact(transaction(chunk));
        if (!result.ok) {
          retry.push(...chunk.map((p) => p.fact));
          continue;
        }
        for (const { delta } of chunk) {
          leases += Number(delta.leases);
          for (const [metric, n] of delta.metrics)
            usage.set(metric, (usage.get(metric) ?? 0) + Number(n));
        }
      }
      pending = retry;
    }
    return {
      leases: latest.size,
      transactions,
      alerts,
      counted: { usage: Object.fromEntries(usage), leases },
    };
  }

  /** The record update and row writes that bring one lease's count to `fact`, or none. */
  async #plan(fact: LeaseFact): Promise<Planned | undefined> {
    const key = usageKeys.usageLease(fact.leaseId);
    const record = await this.#store.get(key);
    const version = record?.[U.version];
    if (typeof version === 'bigint' && Number(version) >= fact.version) return undefined;
    const countedText = record?.[U.totals];
    const counted = typeof countedText === 'string' ? (JSON.parse(countedText) as Usage) : {};
    const metrics = new Map<string, bigint>();
    for (const metric of new Set([...Object.keys(counted), ...Object.keys(fact.totals)])) {
      const delta = BigInt(amountOf(fact.totals, metric)) - BigInt(amountOf(counted, metric));
      if (delta !== 0n) metrics.set(metric, delta);
    }
    const used = (u: Usage) => (Object.values(u).some((v) => v > 0) ? 1n : 0n);
    const delta: RowDelta = {
      metrics,
      leases: used(fact.totals) - (record ? used(counted) : 0n),
      denied: new Map(Object.entries(fact.denied ?? {}).map(([name, n]) => [name, BigInt(n)])),
    };
    const rows = fact.context.scopes.flatMap((scope) =>
      rowsFor(
        scope.entity,
        scope.timezone,
        fact.context.resource,
        fact.acquiredAtMs,
        delta,
        this.#retentionDays,
      ),
    );
    const recordUpdate: ItemUpdate = {
      key,
      set: [
        { attr: U.version, value: BigInt(fact.version) },
        { attr: U.totals, value: JSON.stringify(fact.totals) },
        {
          attr: TABLE_SCHEMA.ttlAttribute,
          value: BigInt(Math.ceil(fact.expiresAtMs / 1_000) + RECORD_SLACK_S),
        },
      ],
      condition:
        typeof version === 'bigint'
          ? { attr: U.version, op: '=', value: version }
          : { absent: TABLE_SCHEMA.partitionKey },
    };
    return { fact, record: recordUpdate, rows, delta };
  }
}

interface Planned {
  readonly fact: LeaseFact;
  readonly record: ItemUpdate;
  readonly rows: readonly RowWrite[];
  /** What it adds to each of its rows. */
  readonly delta: RowDelta;
}

/** Groups planned leases into transactions of at most 100 items, rows shared within one merged. */
function* chunks(planned: readonly Planned[]): Generator<Planned[]> {
  let chunk: Planned[] = [];
  let keys = new Set<string>();
  for (const plan of planned) {
    const added = new Set(plan.rows.map((r) => rowId(r.key)));
    const size = keys.size + chunk.length + 1 + [...added].filter((k) => !keys.has(k)).length;
    if (chunk.length > 0 && size > MAX_TRANSACTION_ITEMS) {
      yield chunk;
      chunk = [];
      keys = new Set();
    }
    chunk.push(plan);
    for (const k of added) keys.add(k);
  }
  if (chunk.length > 0) yield chunk;
}

const rowId = (key: ItemKey) => `${key.pk}\n${key.sk}`;

/** One transaction: each lease's record, and every row with its leases' deltas summed. */
function transaction(chunk: readonly Planned[]): ItemUpdate[] {
  const rows = new Map<string, RowWrite>();
  for (const plan of chunk) {
    for (const row of plan.rows) {
      const id = rowId(row.key);
      const seen = rows.get(id);
      rows.set(id, seen ? { ...seen, delta: addDeltas(seen.delta, row.delta) } : row);
    }
  }
  const rowUpdates = [...rows.values()].flatMap((row): ItemUpdate[] => {
    const set = rowAssignments(row);
    return set.length ? [{ key: row.key, set }] : [];
  });
  return [...chunk.map((p) => p.record), ...rowUpdates];
}

/** Whether a change gives the aggregator anything to count (a lease fact or an alert). */
const countable = (change: ItemChange) =>
  factsOf(change).length > 0 || crossingsOf(change).length > 0;

const PROGRESS = usageKeys.progress();
/** The progress item's own change, come back on the stream. */
const ownChange = (change: ItemChange) =>
  change.key.pk === PROGRESS.pk && change.key.sk === PROGRESS.sk;

/**
 * How old a record is, at least, from the time its stream record gives. Streams round that time
 * down (DynamoDB Local to the minute; AWS documents the second), so the record was written before
 * the end of the minute (or second) it names: counting from there, a lag is never overstated, and
 * `behind` is never a false alarm. A whole minute is taken for a minute.
 */
export function recordAgeMs(approximateCreationMs: number, nowMs: number): number {
  const rounding =
    approximateCreationMs % 60_000 === 0 ? 60_000 : approximateCreationMs % 1_000 === 0 ? 1_000 : 0;
  return Math.max(0, nowMs - approximateCreationMs - rounding);
}

/**
 * A short name for what failed, to store and show: the innermost error's class name (or a system
 * error's code, like `ECONNREFUSED`), never a message, which may carry internals.
 */
export function errorName(error: unknown): string {
  let name = 'Error';
  let at: unknown = error;
  for (let depth = 0; at instanceof Error && depth < 8; depth++) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code)) name = code;
    else if (at.name !== 'Error') name = at.name;
    at = at.cause;
  }
  return name.replace(/[^\w.-]/g, '').slice(0, 64) || 'Error';
}

/** After a write of the progress item failed, how long before an idle poller tries again. */
const RETRY_IDLE_WRITE_MS = 5_000;

/** What a {@link UsageProgress} writes with. */
export interface UsageProgressOptions {
  readonly store: Pick<Store, 'update'>;
  readonly clock?: () => number;
  /** A lag over this is recorded as behind. @default SERVICE_DEFAULTS.usageBehindMs */
  readonly behindMs?: number;
  /** Told when the progress item could not be written (counting goes on without it). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Keeps the usage aggregator's progress item (see {@link progressAttributes}): when a batch was
 * counted and how old its oldest record was, or since when counting has been failing and why
 * (an error name). At most one write per batch, and none for a batch with nothing to count while
 * all is well: the item's own change comes back on the stream, as the aggregator's writes to
 * usage history do, and must not set off another write. A failed write is reported, never
 * thrown.
 *
 * @example
 * const progress = new UsageProgress({ store });
 * try {
 *   await aggregator.apply(changes);
 *   await progress.counted(changes, oldestRecordMs);
 * } catch (error) {
 *   await progress.failed(error);
 * }
 */
export class UsageProgress {
  readonly #store: Pick<Store, 'update'>;
  readonly #clock: () => number;
  readonly #behindMs: number;
  readonly #onError: (error: unknown) => void;
  /** What this process last recorded (none yet, or a write failed: unknown). */
  #recorded: UsageHistoryStatus['status'] | undefined;
  /** When a write last failed (epoch ms): `caughtUp`, called while idle, waits a while after. */
  #writeFailedAtMs = Number.NEGATIVE_INFINITY;

  constructor(options: UsageProgressOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#behindMs = options.behindMs ?? SERVICE_DEFAULTS.usageBehindMs;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * A batch was counted; `oldestRecordMs` is the time its oldest stream record gives
   * (`ApproximateCreationDateTime`), if any.
   */
  async counted(changes: readonly ItemChange[], oldestRecordMs: number | undefined): Promise<void> {
    if (!changes.some(countable)) {
      // Nothing counted: written only to end a failure, or to say how far behind reading is
      // now; never for its own change alone while behind (each write would read back as
      // another batch, as old, and write again).
      if (this.#recorded === 'ok') return;
      if (this.#recorded === 'behind' && changes.every(ownChange)) return;
    }
    const now = this.#clock();
    const lagMs = oldestRecordMs === undefined ? undefined : recordAgeMs(oldestRecordMs, now);
    await this.#write(
      {
        key: usageKeys.progress(),
        set: [
          { attr: P.countedAt, value: BigInt(now) },
          ...(lagMs === undefined ? [] : [{ attr: P.lagMs, value: BigInt(lagMs) }]),
        ],
        remove: [P.failingSince, P.error, ...(lagMs === undefined ? [P.lagMs] : [])],
      },
      lagMs !== undefined && lagMs > this.#behindMs ? 'behind' : 'ok',
    );
  }

  /**
   * A poller found nothing left to read: it is not behind. Writes only when this process last
   * recorded something else (a failure, a lag, or nothing yet).
   */
  async caughtUp(): Promise<void> {
    if (this.#recorded === 'ok' || this.#clock() - this.#writeFailedAtMs < RETRY_IDLE_WRITE_MS)
      return;
    await this.#write(
      {
        key: usageKeys.progress(),
        set: [
          { attr: P.countedAt, value: BigInt(this.#clock()) },
          { attr: P.lagMs, value: 0n },
        ],
        remove: [P.failingSince, P.error],
      },
      'ok',
    );
  }

  /** Counting (or reading the stream) failed; it will be tried again. */
  async failed(error: unknown): Promise<void> {
    await this.#write(
      {
        key: usageKeys.progress(),
        set: [
          { attr: P.failingSince, ifAbsent: BigInt(this.#clock()) },
          { attr: P.error, value: errorName(error) },
        ],
      },
      'failing',
    );
  }

  async #write(update: ItemUpdate, status: UsageHistoryStatus['status']): Promise<void> {
    try {
      await this.#store.update(update);
      this.#recorded = status;
    } catch (error) {
      this.#recorded = undefined;
      this.#writeFailedAtMs = this.#clock();
      this.#onError(error);
    }
  }
}

/** How usage history stands, from the progress item (times in epoch ms; null: never). */
export interface UsageHistoryStatus {
  /** `failing` while the last attempt failed; `behind` when the lag is over the threshold. */
  readonly status: 'ok' | 'behind' | 'failing';
  readonly lagMs: number | null;
  readonly countedAtMs: number | null;
  readonly failingSinceMs: number | null;
  readonly error: string | null;
}

/**
 * Reads the progress item's state (`undefined`: nothing recorded yet, which is `ok`).
 *
 * @example
 * const status = usageHistoryStatus(await store.get(usageKeys.progress()));
 */
export function usageHistoryStatus(
  item: ItemState | undefined,
  behindMs: number = SERVICE_DEFAULTS.usageBehindMs,
): UsageHistoryStatus {
  const number = (attr: string) => {
    const value = own(item, attr);
    return typeof value === 'bigint' ? Number(value) : null;
  };
  const lagMs = number(P.lagMs);
  const failingSinceMs = number(P.failingSince);
  const error = item?.[P.error];
  return {
    status:
      failingSinceMs !== null ? 'failing' : lagMs !== null && lagMs > behindMs ? 'behind' : 'ok',
    lagMs,
    countedAtMs: number(P.countedAt),
    failingSinceMs,
    error: failingSinceMs !== null && typeof error === 'string' ? error : null,
  };
}
