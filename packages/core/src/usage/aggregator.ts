/**
 * The usage aggregator: reads the table's change stream (a Lambda on DynamoDB Streams in AWS,
 * a poller of DynamoDB Local's stream locally) and rolls what the hot path wrote into usage
 * history, off the hot path.
 *
 * What it reads, and where it comes from, is in facts.ts: each fact says "lease L stands at
 * totals T as of version V". A per-lease record keeps the
 * version and totals already counted, and each fact adds `T − counted` to the rows in the same
 * transaction that moves the record, conditional on the version read. So a replayed, duplicated
 * or reordered record changes nothing (an older version than counted is skipped), two readers
 * of one stream count once, and a lease counts its final totals in the period it was acquired.
 *
 * Budget alerts come from the same records: see alerts.ts.
 *
 * How counting stands (when it last counted, how far behind, whether it is failing) goes in one
 * progress item, for the health check: see progress.ts.
 *
 * One lease never holds up the others: leases are written together in transactions, and a
 * transaction DynamoDB rejects for what it holds (an update too large, a row grown past an item's
 * size) is written again lease by lease. A lease rejected alone is counted without the rows
 * DynamoDB names (the others in full), else without its custom metrics and refusal names, else
 * not at all (only marked counted), and reported as set aside.
 * Failures that may pass (throttling, an unreachable table, conflicts) fail the batch instead,
 * to be delivered again.
 */

import { randomBytes } from 'node:crypto';
import { SERVICE_DEFAULTS } from '../defaults.js';
import { amountOf, PERIOD_SECONDS, STANDARD_METRICS, type Usage } from '../engine/limits.js';
import { sleep } from '../engine/state.js';
import { SluiceError, StoreUnavailableError, WriteRejectedError } from '../errors.js';
import { TABLE_SCHEMA, usageAttributes as U, usageKeys } from '../store/schema.js';
import type { AdminStore, ItemKey, ItemUpdate } from '../store/types.js';
import { type AlertSender, crossingsOf, recordAlerts } from './alerts.js';
import { factsOf, type ItemChange, type LeaseFact } from './facts.js';
import { addDeltas, type RowDelta, type RowWrite, rowAssignments, rowsFor } from './periods.js';

/** How long a per-lease record outlives its lease (stream records are kept 24 hours). */
const RECORD_SLACK_S = 2 * PERIOD_SECONDS.day;
/** Items of one DynamoDB transaction. */
const MAX_TRANSACTION_ITEMS = 100;

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
  /**
   * How long after a batch comes a budget threshold it crosses is judged against the item as it
   * then stands (a refused call's charge is given back within a round trip). @default 1000
   */
  readonly alertSettleMs?: number;
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
  /**
   * Leases (or gatherings of refusals) DynamoDB refused to count in full: `rows` when rows it
   * refused (an item grown past 400 KB) were left out and the others counted in full, `custom`
   * when their custom metrics and refusal names were left out, `all` when nothing was counted.
   */
  readonly setAside: readonly { readonly id: string; readonly left: Reduction }[];
}

/** What one batch has written so far. */
interface Tally {
  transactions: number;
  leases: number;
  readonly usage: Map<string, number>;
  readonly setAside: { id: string; left: Reduction }[];
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
      settleMs: this.#options.alertSettleMs ?? 1_000,
    });
    let pending = [...latest.values()];
    const tally: Tally = { transactions: 0, leases: 0, usage: new Map(), setAside: [] };
    const attempts = this.#options.maxAttempts ?? 8;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= attempts)
        throw new StoreUnavailableError('usage aggregation kept conflicting; retry');
      if (attempt > 0) await sleep(Math.random() * 10 * 2 ** attempt);
      const planned = await Promise.all(pending.map((fact) => this.#plan(fact)));
      const retry: LeaseFact[] = [];
      for (const chunk of chunks(planned.filter((p) => p !== undefined)))
        retry.push(...(await this.#write(chunk, tally)));
      pending = retry;
    }
    return {
      leases: latest.size,
      transactions: tally.transactions,
      alerts,
      counted: { usage: Object.fromEntries(tally.usage), leases: tally.leases },
      setAside: tally.setAside,
    };
  }

  /**
   * Writes one transaction; returns the leases to plan again (a condition failed or a conflict).
   * A transaction DynamoDB rejects for what it holds is written lease by lease, and a lease
   * rejected alone is written with less (see the file's comment).
   */
  async #write(chunk: readonly Planned[], tally: Tally): Promise<LeaseFact[]> {
    tally.transactions++;
    let result: Awaited<ReturnType<AdminStore['transact']>>;
    try {
      result = await this.#store.transact(transaction(chunk));
    } catch (error) {
      if (!rejected(error)) throw error;
      const [only] = chunk;
      if (chunk.length > 1 || !only) {
        const retry: LeaseFact[] = [];
        for (const plan of chunk) retry.push(...(await this.#write([plan], tally)));
        return retry;
      }
      const refused = error instanceof WriteRejectedError ? rowsAt(only, error.items) : [];
      const less = reduced(only, refused);
      if (less) return this.#write([less], tally);
      tally.setAside.push({ id: only.fact.leaseId, left: 'all' }); // a delivery again retries it
      return [];
    }
    if (!result.ok) return chunk.map((p) => p.fact);
    for (const { fact, delta, reduced: left } of chunk) {
      if (left) tally.setAside.push({ id: fact.leaseId, left });
      tally.leases += Number(delta.leases);
      for (const [metric, n] of delta.metrics)
        tally.usage.set(metric, (tally.usage.get(metric) ?? 0) + Number(n));
    }
    return [];
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
  /** Written with less than its fact says (see {@link reduced}). */
  readonly reduced?: Reduction;
}

/** What a lease DynamoDB refused was written without (see {@link reduced}). */
export type Reduction = 'rows' | 'custom' | 'all';

/** A rejection no retry changes: DynamoDB refused the request for what it holds. */
const rejected = (error: unknown) => error instanceof SluiceError && error.code === 'internal';

const STANDARD: ReadonlySet<string> = new Set(STANDARD_METRICS);

/**
 * A lease DynamoDB rejected, written with less: without the rows it refused by name (`refused`:
 * the others still count in full), else without custom metrics and refusal names (standard
 * metrics and leases still counted), then its record alone (marked counted, so a delivery again
 * skips it); after that, nothing.
 */
function reduced(plan: Planned, refused: readonly RowWrite[] = []): Planned | undefined {
  if (plan.reduced === 'all') return undefined;
  if (refused.length > 0) {
    const rows = plan.rows.filter((row) => !refused.includes(row));
    return { ...plan, rows, reduced: plan.reduced ?? 'rows' };
  }
  if (plan.reduced === 'custom') return { ...plan, rows: [], delta: nothing, reduced: 'all' };
  const delta: RowDelta = {
    metrics: new Map([...plan.delta.metrics].filter(([metric]) => STANDARD.has(metric))),
    leases: plan.delta.leases,
    denied: new Map(),
  };
  const rows = plan.rows.map((row) => ({ ...row, delta }));
  return { ...plan, rows, delta, reduced: 'custom' };
}

/** The rows of a one-lease transaction at positions `items` (its record is first, then rows). */
function rowsAt(plan: Planned, items: readonly number[]): RowWrite[] {
  const written = plan.rows.filter((row) => rowAssignments(row).length > 0);
  return items.flatMap((i) => (i >= 1 && written[i - 1] ? [written[i - 1] as RowWrite] : []));
}

const nothing: RowDelta = { metrics: new Map(), leases: 0n, denied: new Map() };

/**
 * Most attributes one row's update adds to in a transaction: rows shared by leases are merged
 * into one update, whose expression DynamoDB holds to 4 KB. One lease alone may exceed it (it
 * is then written with less: see {@link reduced}).
 */
const MAX_ROW_ATTRIBUTES = 64;

/** The attributes a row's delta adds to (metrics, and refusals by name or in total). */
const attributesOf = (row: RowWrite): string[] => [
  ...[...row.delta.metrics.keys()].map((m) => `m ${m}`),
  ...(row.top ? ['denied'] : [...row.delta.denied.keys()].map((n) => `d ${n}`)),
];

/**
 * Groups planned leases into transactions of at most 100 items, rows shared within one merged,
 * and no merged row adding to more than {@link MAX_ROW_ATTRIBUTES} attributes.
 */
function* chunks(planned: readonly Planned[]): Generator<Planned[]> {
  let chunk: Planned[] = [];
  let rows = new Map<string, Set<string>>();
  for (const plan of planned) {
    const added = plan.rows.map((r) => ({ id: rowId(r.key), attributes: attributesOf(r) }));
    const newRows = new Set(added.map((r) => r.id).filter((id) => !rows.has(id))).size;
    const size = rows.size + chunk.length + 1 + newRows;
    const crowded = added.some(({ id, attributes }) => {
      const merged = new Set([...(rows.get(id) ?? []), ...attributes]);
      return merged.size > MAX_ROW_ATTRIBUTES;
    });
    if (chunk.length > 0 && (size > MAX_TRANSACTION_ITEMS || crowded)) {
      yield chunk;
      chunk = [];
      rows = new Map();
    }
    chunk.push(plan);
    for (const { id, attributes } of added) {
      const set = rows.get(id) ?? new Set();
      for (const a of attributes) set.add(a);
      rows.set(id, set);
    }
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
