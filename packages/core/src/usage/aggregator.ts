/**
 * The usage aggregator: reads the table's change stream (a Lambda on DynamoDB Streams in AWS,
 * a poller of DynamoDB Local's stream locally) and rolls what the hot path wrote into usage
 * history, off the hot path.
 *
 * What each record adds is in facts.ts: a difference (an estimate, a settlement's change of the
 * totals, a cancellation, refusals), never a total, so a lease's records add up to its final
 * totals in whatever order they come. Each row is written once per batch, with every record of
 * the batch that adds to it, and counts each record once by the marks it keeps (marks.ts): no
 * read and no record per lease, no transaction. A lease counts in the periods it was acquired in.
 * The rows: each scope's hour row for the resource, the top-entities boards of its day and month
 * (boards.ts), and the deployment-wide roll-up's hour row for the resource.
 *
 * Budget alerts come from the same records: see alerts.ts.
 *
 * How counting stands (when it last counted, how far behind, whether it is failing) goes in one
 * progress item, for the health check: see progress.ts.
 *
 * One row never holds up the others. A row DynamoDB rejects for what it holds (an item grown past
 * 400 KB by thousands of custom metric names) is written without the batch's custom metrics and
 * refusal names, else with its marks alone (nothing counted there), and reported as set aside.
 * Failures that may pass (throttling, an unreachable table) fail the batch instead, to be
 * delivered again.
 */

import { randomBytes } from 'node:crypto';
import { SERVICE_DEFAULTS } from '../defaults.js';
import type { Usage } from '../engine/limits.js';
import { sleep } from '../engine/state.js';
import { SluiceError, StoreUnavailableError } from '../errors.js';
import { own } from '../names.js';
import type { AdminStore, ItemKey, ItemState } from '../store/types.js';
import { type AlertSender, crossingsOf, recordAlerts, type SendOptions } from './alerts.js';
import { added, type BoardPart, boardOf, boardWrite, pastMarks, withoutCustom } from './boards.js';
import { judged, loggable } from './event-log.js';
import {
  type Contribution,
  contributionsOf,
  type ItemChange,
  type StreamPosition,
} from './facts.js';
import { markAttribute, STREAM_KEEPS_MS, sortable, staleMarks } from './marks.js';
import {
  boardsFor,
  hourRow,
  placeable,
  ROLLUP_ENTITY,
  type RowDelta,
  type RowWrite,
} from './periods.js';
import { inParts, type Part, past, type Reduction, reduced, rowUpdate } from './row-writes.js';

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
  /**
   * This aggregator's name as a sender of budget alerts: an alert it claimed and did not send (it
   * was stopped) is taken over at once by an aggregator of the same name, by another only once
   * the claim lapses. Give one to a process that takes its predecessor's place (the same host and
   * port). @default a random name per aggregator
   */
  readonly claimer?: string;
  /** Writes of one row that find its marks moved (another reader) before the batch fails. @default 8 */
  readonly maxAttempts?: number;
  /**
   * How long after a batch comes a budget threshold it crosses is judged against the item as it
   * then stands (a refused call's charge is given back within a round trip). @default 1000
   */
  readonly alertSettleMs?: number;
}

export type { Reduction };

/** What one {@link UsageAggregator.apply} wrote. */
export interface ApplyReport {
  /** Records the batch held that add to usage history. */
  readonly records: number;
  /** Of them, those older than the stream keeps records, not counted (see marks.ts). */
  readonly expired: number;
  /** Row writes made (each row at most once, unless DynamoDB refused one or another reader raced). */
  readonly writes: number;
  /** Budget alerts created. */
  readonly alerts: number;
  /** What this call added to usage history, per metric, and to leases counted. */
  readonly counted: { readonly usage: Usage; readonly leases: number };
  /** Rows DynamoDB refused to count in full, with the leases (or refusals) left out there. */
  readonly setAside: readonly { readonly row: string; readonly ids: string[]; left: Reduction }[];
  /**
   * Leases (or gatherings of refusals) not counted because their context names what no row can
   * hold (an entity name the API refuses, a time zone that does not exist), or their lease id is
   * none the engine makes: written by hand or by another program, never by the engine. A record
   * whose item holds no event, settlement or gathering the engine writes (not JSON, another
   * shape, a usage of fractions) is named by its item's key and sort key.
   */
  readonly unplaced: readonly string[];
}

/** A row to write, with every part of the batch that adds to it. */
interface Row {
  readonly write: Omit<RowWrite, 'delta'>;
  readonly parts: Part[];
}

/** A top-entities board to add to, with every part of the batch that counts there. */
interface BoardWork {
  readonly key: ItemKey;
  readonly expiresAtS: number;
  readonly parts: BoardPart[];
}

/** A record that adds to usage history, and where the stream holds it. */
interface Counted {
  readonly contribution: Contribution;
  readonly position: StreamPosition;
}

/** What one batch has written so far. */
interface Tally {
  writes: number;
  leases: bigint;
  readonly usage: Map<string, bigint>;
  readonly setAside: { row: string; ids: string[]; left: Reduction }[];
}

/** Row writes of one batch in flight at once. */
const CONCURRENT_WRITES = 16;

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
  /** How it sends budget alerts (`left`: those found claimed by another, until the claim lapses). */
  readonly #sending: SendOptions;

  constructor(options: AggregatorOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#retentionDays = options.retentionDays ?? SERVICE_DEFAULTS.usageRetentionDays;
    this.#options = options;
    this.#sending = {
      clock: this.#clock,
      claimer: options.claimer ?? randomBytes(9).toString('base64url'),
      ...(options.sendAlert ? { send: options.sendAlert } : {}),
      onSendFailure: options.onSendFailure ?? 'retry',
      onError: options.onError ?? (() => {}),
      settleMs: options.alertSettleMs ?? 1_000,
      left: new Map(),
    };
  }

  /**
   * Counts a batch of changes (in stream order, each with its position: see `changeOf`) exactly
   * once; throws (the rows written stay counted, and a delivery again adds only the rest) if it
   * cannot.
   */
  async apply(changes: readonly ItemChange[]): Promise<ApplyReport> {
    const { counted, expired, unplaced } = this.#recordsOf(changes);
    // A lease's cancellation counts only after its counted event, once (event-log.ts).
    const judgement = await judged(this.#store, counted);
    const { rows, boards } = this.#rowsOf(judgement.kept);
    const alerts = await recordAlerts(this.#store, changes.flatMap(crossingsOf), this.#sending);
    const tally: Tally = { writes: 0, leases: 0n, usage: new Map(), setAside: [] };
    const work = [
      ...[...rows.values()].map((row) => async () => {
        for (const parts of inParts(row.parts)) await this.#count(row.write, parts, tally);
      }),
      ...[...boards.values()].map((board) => () => this.#board(board, tally)),
      ...judgement.writes.map((write) => async () => {
        tally.writes++;
        await this.#store.update(write);
      }),
    ];
    const worker = async () => {
      for (let next = work.shift(); next; next = work.shift()) await next();
    };
    await Promise.all(Array.from({ length: CONCURRENT_WRITES }, worker));
    const records = new Set([...rows.values()].flatMap((r) => r.parts.map((p) => p.position)));
    return {
      records: records.size + expired,
      expired,
      writes: tally.writes,
      alerts,
      counted: {
        usage: Object.fromEntries([...tally.usage].map(([m, n]) => [m, Number(n)])),
        leases: Number(tally.leases),
      },
      setAside: tally.setAside,
      unplaced,
    };
  }

  /** Sends the alerts left to another aggregator whose claim has lapsed (each batch does too). */
  sendLapsedAlerts = (): Promise<void> =>
    recordAlerts(this.#store, [], this.#sending).then(() => {});

  /** The batch's records that add to usage history (each once), in stream order. */
  #recordsOf(changes: readonly ItemChange[]): {
    counted: Counted[];
    expired: number;
    unplaced: string[];
  } {
    const counted: Counted[] = [];
    const unplaced: string[] = [];
    const seen = new Set<string>(); // a record twice in one batch counts once
    const oldest = this.#clock() - STREAM_KEEPS_MS;
    let expired = 0;
    for (const change of changes) {
      for (const contribution of contributionsOf(change, (item) => unplaced.push(item))) {
        const position = change.position;
        if (!position)
          throw new Error(
            'a change without its stream position cannot be counted exactly once: read it with changeOf(record, shardId)',
          );
        const id = `${contribution.kind} ${position.shard} ${position.sequence}`;
        if (seen.has(id)) continue;
        seen.add(id);
        // Older than any mark is kept: it may have been counted, and its mark let go.
        if (position.atMs > 0 && position.atMs < oldest) expired++;
        else if (
          !placeable(contribution.context) ||
          (contribution.event && !loggable(contribution.id))
        )
          unplaced.push(contribution.id);
        else counted.push({ contribution, position });
      }
    }
    return { counted, expired, unplaced };
  }

  /** The rows and boards the records add to, each row with its parts in stream order. */
  #rowsOf(counted: readonly Counted[]): {
    rows: Map<string, Row>;
    boards: Map<string, BoardWork>;
  } {
    const rows = new Map<string, Row>();
    const boards = new Map<string, BoardWork>();
    for (const { contribution, position } of counted) {
      const delta: RowDelta = {
        metrics: contribution.metrics,
        leases: contribution.leases,
        denied: contribution.denied,
      };
      const mark = markAttribute(contribution.kind, position.shard);
      const sequence = sortable(position.sequence);
      const { context, atMs } = contribution;
      const retention = this.#retentionDays;
      context.scopes.forEach(({ entity, timezone }, i) => {
        const { delta: _, ...write } = hourRow(
          entity,
          timezone,
          context.resource,
          atMs,
          delta,
          retention,
        );
        const row = rows.get(rowId(write.key)) ?? { write, parts: [] };
        rows.set(rowId(write.key), row);
        row.parts.push({ contribution, position, mark, sequence, delta, reported: i === 0 });
        for (const { key, expiresAtS } of boardsFor(entity, timezone, atMs, retention)) {
          const board = boards.get(rowId(key)) ?? { key, expiresAtS, parts: [] };
          boards.set(rowId(key), board);
          board.parts.push({ entity, contribution, position, mark, sequence });
        }
      });
      // The deployment-wide roll-up: each record once, whoever it counts for.
      const rolled = hourRow(ROLLUP_ENTITY, 'UTC', context.resource, atMs, delta, retention);
      const { delta: _, ...write } = rolled;
      const rollup = rows.get(rowId(write.key)) ?? { write, parts: [] };
      rows.set(rowId(write.key), rollup);
      rollup.parts.push({ contribution, position, mark, sequence, delta, reported: false });
    }
    for (const row of rows.values())
      row.parts.sort(
        (a, b) => a.mark.localeCompare(b.mark) || a.sequence.localeCompare(b.sequence),
      );
    return { rows, boards };
  }

  /**
   * Adds its parts past the board's marks to one board: read, changed, written if unchanged. A
   * board DynamoDB refuses (grown too large by custom metrics) keeps standard metrics only.
   */
  async #board(work: BoardWork, tally: Tally): Promise<void> {
    let standardOnly = false;
    // Every shard's reader writes the period's boards: give way, and try longer than for a row.
    for (let attempt = 0; attempt < 4 * (this.#options.maxAttempts ?? 8); attempt++) {
      if (attempt > 0) await sleep(Math.random() * 5 * 2 ** Math.min(attempt, 6));
      const item = await this.#store.get(work.key);
      const parts = pastMarks(work.parts, item);
      if (parts.length === 0) return;
      let board = added(boardOf(item), parts);
      if (standardOnly) board = withoutCustom(board);
      tally.writes++;
      const write = boardWrite(work.key, item, board, parts, work.expiresAtS, this.#clock());
      try {
        if (!(await this.#store.update(write)).ok) continue;
      } catch (error) {
        if (!rejected(error) || standardOnly) throw error;
        standardOnly = true;
        continue;
      }
      if (standardOnly)
        tally.setAside.push({ row: rowId(work.key), ids: idsOf(parts), left: 'custom' });
      return;
    }
    throw new StoreUnavailableError('a top-entities board kept changing under this batch; retry');
  }

  /**
   * Writes one row with `parts`: first not knowing the row (each mark must be before what it
   * adds), then, if another reader moved a mark, with what is past the marks as they are.
   */
  async #count(write: Row['write'], parts: readonly Part[], tally: Tally): Promise<void> {
    let marks: ItemState | undefined; // unknown until a write finds them moved
    let reduction: Reduction | undefined;
    for (let attempt = 0; attempt < (this.#options.maxAttempts ?? 8); attempt++) {
      const pending = marks ? past(parts, marks) : parts;
      if (pending.length === 0) return;
      const update = rowUpdate(write, pending, marks, reduction);
      let result: Awaited<ReturnType<AdminStore['update']>>;
      try {
        tally.writes++;
        result = await this.#store.update(update);
      } catch (error) {
        if (!rejected(error)) throw error;
        if (reduction === 'all') {
          tally.setAside.push({ row: rowId(write.key), ids: idsOf(pending), left: 'all' });
          return; // nothing written: a delivery again tries it again
        }
        reduction = reduction === undefined ? 'custom' : 'all';
        continue;
      }
      if (!result.ok) {
        marks = result.item ?? {};
        continue;
      }
      if (reduction)
        tally.setAside.push({ row: rowId(write.key), ids: idsOf(pending), left: reduction });
      if (reduction !== 'all') report(tally, pending, reduction);
      await this.#forgetStale(write.key, result.item, tally);
      return;
    }
    throw new StoreUnavailableError('usage rows kept changing under this batch; retry');
  }

  /** Removes marks older than the stream keeps records (they guard nothing). */
  async #forgetStale(key: ItemKey, item: ItemState, tally: Tally): Promise<void> {
    const stale = staleMarks(item, this.#clock());
    if (stale.length === 0) return;
    tally.writes++;
    // Conditional on each as read: a mark moved since is kept (whoever moved it removes it later).
    await this.#store.update({
      key,
      set: [],
      remove: stale,
      condition: {
        and: stale.map((attr) => ({ attr, op: '=', value: String(own(item, attr)) }) as const),
      },
    });
  }
}

const rowId = (key: ItemKey) => `${key.pk}\n${key.sk}`;

const idsOf = (parts: readonly { readonly contribution: Contribution }[]) => [
  ...new Set(parts.map((p) => p.contribution.id)),
];

/** A rejection no retry changes: DynamoDB refused the request for what it holds. */
const rejected = (error: unknown) => error instanceof SluiceError && error.code === 'internal';

/** Adds what the written parts counted (once per record: at its first row) to the report. */
function report(tally: Tally, parts: readonly Part[], reduction: Reduction | undefined): void {
  for (const part of parts) {
    if (!part.reported) continue;
    const delta = reduction ? reduced(part.delta, reduction) : part.delta;
    tally.leases += delta.leases;
    for (const [metric, n] of delta.metrics)
      tally.usage.set(metric, (tally.usage.get(metric) ?? 0n) + n);
  }
}
