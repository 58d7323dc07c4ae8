/**
 * What one process keeps between decisions: the store, the clock, its settings, its memory of
 * each item's last state (what keeps the hot path to one write), of each lease's record, and the
 * signing keys. Every operation (acquire.ts, settle.ts, available.ts) runs on one.
 *
 * No memory answers success alone: each may refuse, or guess a write's shape, and the table
 * decides by the write's condition. What each may answer is said where it is kept.
 */
import { KEY_SEPARATOR } from '../canonical.js';
import { ENGINE_DEFAULTS, type EngineTuning, signingKeyRetainMs } from '../defaults.js';
import { itemAttributes, shardOf } from '../store/schema.js';
import type { ItemKey, ItemState, Store } from '../store/types.js';
import type { Combiner } from './combining.js';
import type { Usage } from './limits.js';
import { ceilDiv, NS_PER_MS } from './nanos.js';
import { Recent } from './recent.js';
import { SigningKeys } from './signing-keys.js';
import type { LimiterOptions } from './types.js';

/** The last state this process saw of an item, and when. */
export interface Seen {
  readonly state: ItemState;
  readonly atMs: number;
}

/** What the lease item records: its version, what was reported, the totals applied. */
export interface LeaseRecord {
  readonly version: bigint;
  /** Metrics reported by adjusts and releases (running totals); the estimate is not a report. */
  readonly reported: Usage;
  /** The totals the buckets are charged at now. */
  readonly totals: Usage;
  readonly settled: boolean;
  /** Of a settling release: its kind and totals, so the same release again answers the same. */
  readonly fingerprint?: string;
  /**
   * Debt the lease charged into a quota's window after its own (an adjust past a window's end):
   * `item index/limit name` → `[window start ms, amount]`, so that a lower report takes it back
   * from that window (see items.ts).
   */
  readonly later?: Readonly<Record<string, readonly [number, number]>>;
}

/** `joinKey(pk, sk)`, without its list of parts: this runs several times a decision. */
export const keyOf = (key: ItemKey): string => key.pk + KEY_SEPARATOR + key.sk;
export const toNs = (ms: number): bigint => BigInt(Math.round(ms * 1_000)) * 1_000n;
export const nsToMs = (ns: bigint): number => Number(ceilDiv(ns, NS_PER_MS));
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One process's memory of the engine (not an engine of its own: the operations are functions
 * that take one). Create one per process (a Lambda container) and pass it to the operations;
 * {@link Limiter} wraps one. Internal: `@sluice/core/internal`.
 *
 * @example
 * const engine = new EngineState({ store: new DynamoDBStore({ client, tableName: 'sluice' }) });
 * const result = await acquire(engine, { checks, usage: { tokens: 2_000 } });
 */
export class EngineState {
  readonly store: Store;
  readonly clock: () => number;
  readonly tuning: EngineTuning;
  readonly onBackgroundError: (error: unknown) => void;
  readonly keys: SigningKeys;
  /**
   * The last state seen of each item (the least recently written are dropped). Alone it may only
   * refuse, from a state at most `cacheDenyMaxAgeMs` old; it guesses each write's branch, and the
   * write's condition on the item decides admission.
   */
  readonly seen: Recent<Seen>;
  /**
   * The last record seen of each lease. Alone it may answer only for a settled lease (final: the
   * same release again, or 409); an unsettled one guesses the next version, and is read from the
   * table before a repeated adjust is answered from it.
   */
  readonly leases: Recent<LeaseRecord>;
  /**
   * How acquire sends its writes when this process serves many calls at once (see
   * combining.ts; {@link Limiter} sets one); without it each write goes to the store as it comes.
   */
  combiner: Combiner | undefined;
  /**
   * The most shards seen of each sharded scope (by its own item's key). It only places writes:
   * each carries the share it assumes, which its item's condition checks.
   */
  readonly shardCounts: Recent<number>;
  /** Growths of sharded scopes this process runs (see shards.ts). */
  readonly growing = new Map<string, Promise<void>>();
  /** A write counter of each hot shard as first seen (see shards.ts): it only starts splits. */
  readonly writeCounts: Recent<{ readonly writes: bigint; readonly atMs: number }>;

  constructor(options: LimiterOptions) {
    const { store, clock, onBackgroundError, onSigningKeysRestored, combiner, ...tuning } = options;
    this.store = store;
    this.combiner = combiner;
    this.clock = clock ?? Date.now;
    this.tuning = { ...ENGINE_DEFAULTS, ...tuning };
    this.onBackgroundError = onBackgroundError ?? (() => {});
    this.seen = new Recent(this.tuning.cacheSize);
    this.leases = new Recent(this.tuning.cacheSize);
    this.shardCounts = new Recent(this.tuning.cacheSize);
    this.writeCounts = new Recent(this.tuning.cacheSize);
    this.keys = new SigningKeys({
      store,
      clock: this.clock,
      refreshMs: this.tuning.signingKeyRefreshMs,
      retainMs: signingKeyRetainMs(this.tuning),
      ...(onSigningKeysRestored ? { onRestore: onSigningKeysRestored } : {}),
    });
  }

  /**
   * Whether the state remembered of an item is recent enough at `nowMs` to refuse from
   * (`cacheDenyMaxAgeMs`): every plan made from memory may deny only then.
   */
  recent(key: ItemKey, nowMs: number): boolean {
    const seen = this.seen.get(keyOf(key));
    return seen !== undefined && nowMs - seen.atMs <= this.tuning.cacheDenyMaxAgeMs;
  }

  /** The last state seen of an item, if any. */
  stateOf(key: ItemKey): ItemState | undefined {
    return this.seen.get(keyOf(key))?.state;
  }

  /** Reads each item from the table (together) and remembers what it holds now. */
  async readAgain(keys: readonly ItemKey[]): Promise<void> {
    await Promise.all(
      keys.map(async (key) => this.remember(key, (await this.store.get(key)) ?? {})),
    );
  }

  /**
   * Remembers `state` as seen at `atMs` (now, unless it was computed from an older memory: a
   * state derived from one seen then is no younger than it, and may refuse no longer).
   */
  remember(key: ItemKey, state: ItemState, atMs = this.clock()): void {
    this.seen.set(keyOf(key), { state, atMs });
    const n = state[itemAttributes.shards];
    if (typeof n !== 'bigint') return;
    const count = Math.abs(Number(n));
    const base = keyOf(shardOf(key).base);
    if (count > (this.shardCounts.get(base) ?? 1)) this.shardCounts.set(base, count);
  }

  /** How many shards this process knows the scope whose own item is `base` to have. */
  shardCount(base: ItemKey): number {
    return this.shardCounts.get(keyOf(base)) ?? 1;
  }

  /** Resolves when every growth of a sharded scope this process started has ended. */
  async growth(): Promise<void> {
    while (this.growing.size > 0) await Promise.all(this.growing.values());
  }

  /** Work that outlives the operation that started it (a give-back after a deadline passed). */
  readonly #background = new Set<Promise<void>>();

  /** Runs `work` after its operation has answered; a failure goes to `onBackgroundError`. */
  background(work: Promise<unknown>): void {
    const task: Promise<void> = work.then(
      () => {},
      (error: unknown) => this.onBackgroundError(error),
    );
    this.#background.add(task);
    void task.finally(() => this.#background.delete(task));
  }

  /** Resolves when the work started with {@link background} has ended (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.#background.size > 0) await Promise.all(this.#background);
  }

  /**
   * Forgets what this process last saw of every item, so nothing is denied from memory: for a
   * reset served by the same process.
   */
  forget(): void {
    this.seen.clear();
  }
}
