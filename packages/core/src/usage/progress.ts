/**
 * How usage history stands, for the health check: the aggregator (in AWS) or the local stream
 * reader keeps one progress item, written at most once per batch, with when it last counted, how
 * far behind it was, and since when counting has been failing.
 */

import { SERVICE_DEFAULTS } from '../defaults.js';
import { own } from '../names.js';
import { progressAttributes as P, usageKeys } from '../store/schema.js';
import type { ItemState, ItemUpdate, Store } from '../store/types.js';
import { crossingsOf } from './alerts.js';
import { contributionsOf, type ItemChange } from './facts.js';

/** Whether a change gives the aggregator anything to count (usage or an alert). */
const countable = (change: ItemChange) =>
  contributionsOf(change).length > 0 || crossingsOf(change).length > 0;

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
