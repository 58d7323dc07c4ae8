/**
 * Refusals in usage history, without a write per refusal: each process gathers them per entity,
 * resource and quarter hour, and writes each gathering once it is
 * {@link SERVICE_DEFAULTS.denialFlushMs} old, as one small item — at most one write per entity and
 * resource in that time. (A quarter hour never spans a local midnight in any time zone, so each
 * gathering belongs to one hour, one local day and one local month.) The
 * usage aggregator reads that item from the stream and adds it to the rows exactly once (see
 * aggregator.ts). Refusals a process had gathered but not written when it stopped are lost: the
 * counts are a lower bound, short by at most one flush interval of one process.
 */
import { SERVICE_DEFAULTS } from '../defaults.js';
import { newLeaseId } from '../engine/lease.js';
import { PERIOD_SECONDS } from '../engine/limits.js';
import { type ContextWire, contextToWire, type UsageContext } from '../engine/usage-context.js';
import { denialAttributes, itemKeys, TABLE_SCHEMA } from '../store/schema.js';
import type { Store } from '../store/types.js';

/** A written gathering: `[start of its quarter hour, counts by limit name, context]`. */
export type DenialBatch = [startMs: number, counts: Record<string, number>, context: ContextWire];

interface Gathered {
  readonly id: string;
  readonly startMs: number;
  readonly since: number;
  readonly context: ContextWire;
  /** Refusals by limit name. */
  readonly counts: Map<string, number>;
}

/**
 * Most limit names one gathering counts: its names become attributes of the usage-history rows
 * the aggregator writes in one update. A refusal naming another is gathered apart.
 */
const MAX_NAMES = 32;

/** Time zones are whole quarter hours off UTC. */
const QUARTER_HOUR_MS = 900_000;
/** How long a written gathering is kept: the stream holds it 24 hours. */
const KEEP_S = 2 * PERIOD_SECONDS.day;

/** Options of a {@link DenialBuffer}. */
export interface DenialBufferOptions {
  readonly store: Pick<Store, 'update'>;
  readonly clock?: () => number;
  /** @default SERVICE_DEFAULTS.denialFlushMs */
  readonly flushMs?: number;
}

/**
 * A buffer of writes: it answers nothing.
 *
 * @example
 * denials.record(policy.context, ['tpm']);   // on each refusal
 * await denials.flushDue();                  // after each request: writes what is old enough
 */
export class DenialBuffer {
  readonly #store: Pick<Store, 'update'>;
  readonly #clock: () => number;
  readonly #flushMs: number;
  readonly #gathered = new Map<string, Gathered>();
  /** When the oldest gathering began (infinite when none): most calls need look no further. */
  #oldestMs = Number.POSITIVE_INFINITY;

  constructor(options: DenialBufferOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#flushMs = options.flushMs ?? SERVICE_DEFAULTS.denialFlushMs;
  }

  /**
   * Counts one refusal of the context's entity (not its ancestors) by each named limit. A refusal
   * naming more than {@link MAX_NAMES} limits is gathered in parts of that many names.
   */
  record(context: UsageContext, limitNames: readonly string[]): void {
    const distinct = [...new Set(limitNames)];
    for (let i = 0; i < distinct.length; i += MAX_NAMES) {
      const part = new Set(distinct.slice(i, i + MAX_NAMES));
      this.#gather(
        context,
        part,
        limitNames.filter((name) => part.has(name)),
      ); // twice counts twice
    }
  }

  /** Counts `names` (at most {@link MAX_NAMES} distinct: `kept`) in the gathering they go to. */
  #gather(context: UsageContext, kept: ReadonlySet<string>, names: readonly string[]): void {
    const [scope] = context.scopes;
    if (!scope || names.length === 0) return;
    const nowMs = this.#clock();
    const startMs = Math.floor(nowMs / QUARTER_HOUR_MS) * QUARTER_HOUR_MS;
    const at = `${scope.entity}\n${context.resource}\n${startMs}`;
    let entry = this.#gathered.get(at);
    const fresh = [...kept].filter((name) => !entry?.counts.has(name)).length;
    if (entry && entry.counts.size + fresh > MAX_NAMES) {
      // Full: kept under its own id until written; this refusal begins another gathering.
      this.#gathered.delete(at);
      this.#gathered.set(`${at}\n${entry.id}`, entry);
      entry = undefined;
    }
    if (!entry) {
      const own = { resource: context.resource, scopes: [scope] };
      const id = newLeaseId(); // a random 128-bit id, as a lease's
      entry = { id, startMs, since: nowMs, context: contextToWire(own), counts: new Map() };
      this.#gathered.set(at, entry);
      this.#oldestMs = Math.min(this.#oldestMs, nowMs);
    }
    for (const name of names) entry.counts.set(name, (entry.counts.get(name) ?? 0) + 1);
  }

  /**
   * Writes every gathering old enough (all of them with `all`). Each is written once under its
   * own id, so a retried write cannot count twice; one that fails is kept for the next flush.
   */
  /** Whether refusals are gathered and not written yet. */
  get pending(): boolean {
    return this.#gathered.size > 0;
  }

  async flushDue(all = false): Promise<void> {
    const nowMs = this.#clock();
    if (!all && nowMs - this.#oldestMs < this.#flushMs) return; // nothing is due yet
    const due = [...this.#gathered].filter(([, g]) => all || nowMs - g.since >= this.#flushMs);
    for (const [at] of due) this.#gathered.delete(at);
    this.#oldestMs = Number.POSITIVE_INFINITY;
    for (const g of this.#gathered.values()) this.#oldestMs = Math.min(this.#oldestMs, g.since);
    const failed = await Promise.all(
      due.map(async ([at, g]) => {
        const batch: DenialBatch = [g.startMs, Object.fromEntries(g.counts), g.context];
        try {
          await this.#store.update({
            key: itemKeys.denials(g.id),
            set: [
              { attr: denialAttributes.batch, value: JSON.stringify(batch) },
              { attr: TABLE_SCHEMA.ttlAttribute, value: BigInt(Math.ceil(nowMs / 1_000) + KEEP_S) },
            ],
            condition: { absent: TABLE_SCHEMA.partitionKey }, // written before: nothing to do
          });
          return undefined;
        } catch (error) {
          // Kept under its own id (it may have been written after all: then the next write of
          // it changes nothing), apart from any gathering begun since.
          this.#gathered.set(this.#gathered.has(at) ? `${at}\n${g.id}` : at, g);
          this.#oldestMs = Math.min(this.#oldestMs, g.since);
          return error;
        }
      }),
    );
    const error = failed.find((e) => e !== undefined);
    if (error !== undefined) throw error;
  }
}
