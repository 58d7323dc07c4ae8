/**
 * Which acquires' usage events usage history has counted, kept where a cancellation written
 * alone can look them up.
 *
 * An acquire's usage event adds its estimate, and a refused acquire's cancellation takes it back
 * (facts.ts). A cancellation carried by a give-back always has its event before it: the give-back
 * follows a write known to have applied. One written alone does not: it follows a write whose
 * answer was lost when the item can no longer tell whether it applied (its event may never have
 * reached the stream), or a give-back whose own answer was lost (that give-back may have carried
 * the cancellation already). So a cancellation written alone counts only if its lease's event is
 * in the stream and no other cancellation of that lease was counted.
 *
 * The event and its cancellations are records of one item, so one shard holds them in order (or
 * a parent shard the event, read first). When a reader comes to a cancellation, its event is in
 * the same batch or in one counted before. Each batch therefore logs the events and cancellations
 * it counts, per minute of acquire, as items of their own: never overwritten (a replayed, split or
 * second reader's batch adds items), and each entry a fact about the stream, true whoever logged
 * it. A cancellation written alone whose event is not in its batch reads its minute's log: one
 * query, only on a path that follows a failure.
 */

import { randomBytes } from 'node:crypto';
import { TABLE_SCHEMA, usageAttributes, usageKeys } from '../store/schema.js';
import type { AdminStore, ItemUpdate } from '../store/types.js';
import { STREAM_KEEPS_MS } from './marks.js';

/** One acquire-kind record of a batch, as the log judges it. */
export interface EventRecord {
  readonly lease: string;
  /** When the lease was acquired (its event and cancellations carry the same time). */
  readonly atMs: number;
  readonly kind: 'estimate' | 'cancellation' | 'cancellation-alone';
  /** Its sequence number in the stream. */
  readonly sequence: string;
}

/** What the log knows of one lease. */
interface Known {
  /** Its event is in the stream. */
  estimated: boolean;
  /** Sequence numbers of the cancellations counted. */
  readonly cancellations: Set<string>;
}

/** How long a log item is kept: the stream's 24 hours and a day's margin (a lease lives less). */
const LOG_KEPT_MS = STREAM_KEEPS_MS + 86_400_000;
/** Entries one log item holds at most (well under DynamoDB's 400 KB an item). */
const ENTRIES_PER_ITEM = 2_000;
/** Items one page of a minute's log reads. */
const PAGE = 100;

const minuteOf = (atMs: number) => Math.floor(atMs / 60_000);
const estimated = (lease: string) => `+${lease}`;
const cancelled = (lease: string, sequence: string) => `-${lease}:${sequence}`;

/** Reads a minute's log: what each lease it names is known by. */
async function readLog(store: AdminStore, minute: number): Promise<Map<string, Known>> {
  const known = new Map<string, Known>();
  const pk = usageKeys.eventLog(minute * 60_000, '').pk;
  let after: string | undefined;
  do {
    const page = await store.query(pk, { limit: PAGE, ...(after ? { after } : {}) });
    for (const { state } of page.items) {
      const entries = state[usageAttributes.entries];
      if (typeof entries !== 'string') continue;
      for (const entry of entries.split(' ')) {
        const colon = entry.indexOf(':');
        const lease = colon < 0 ? entry.slice(1) : entry.slice(1, colon);
        const k = known.get(lease) ?? { estimated: false, cancellations: new Set<string>() };
        known.set(lease, k);
        if (entry.startsWith('+')) k.estimated = true;
        else if (entry.startsWith('-') && colon > 0) k.cancellations.add(entry.slice(colon + 1));
      }
    }
    after = page.next;
  } while (after !== undefined);
  return known;
}

/**
 * Judges a batch's acquire-kind records (in stream order): the cancellations written alone that
 * must not count, and the log items that record what the batch counts (write them before the
 * batch is reported done; in any order with its rows).
 */
export async function judged(
  store: AdminStore,
  records: readonly EventRecord[],
): Promise<{ readonly skipped: ReadonlySet<EventRecord>; readonly writes: ItemUpdate[] }> {
  // An event anywhere in the batch is in the stream (a batch read by hand need not be in order).
  const inBatch = new Set(records.filter((r) => r.kind === 'estimate').map((r) => r.lease));
  const known = new Map<string, Known>();
  const logs = new Map<number, Promise<Map<string, Known>>>();
  const skipped = new Set<EventRecord>();
  const entries = new Map<number, string[]>();
  const log = (r: EventRecord, entry: string) => {
    const minute = minuteOf(r.atMs);
    entries.set(minute, [...(entries.get(minute) ?? []), entry]);
  };
  for (const r of records) {
    let k = known.get(r.lease);
    if (!k) {
      k = { estimated: inBatch.has(r.lease), cancellations: new Set() };
      known.set(r.lease, k);
      // Its event is not in the batch: what earlier batches counted of the lease.
      if (r.kind === 'cancellation-alone' && !k.estimated) {
        const minute = minuteOf(r.atMs);
        const read = logs.get(minute) ?? readLog(store, minute);
        logs.set(minute, read);
        const before = (await read).get(r.lease);
        k.estimated = before?.estimated ?? false;
        for (const s of before?.cancellations ?? []) k.cancellations.add(s);
      }
    }
    if (r.kind === 'estimate') {
      log(r, estimated(r.lease));
      continue;
    }
    if (r.kind === 'cancellation') k.estimated = true; // a give-back follows a write that applied
    const again = [...k.cancellations].some((s) => s !== r.sequence);
    if (r.kind === 'cancellation-alone' && (!k.estimated || again)) {
      skipped.add(r);
      continue;
    }
    k.cancellations.add(r.sequence);
    log(r, cancelled(r.lease, r.sequence));
  }
  return { skipped, writes: logWrites(entries) };
}

/** New log items holding `entries` by minute (random sort keys: never one written before). */
function logWrites(entries: ReadonlyMap<number, readonly string[]>): ItemUpdate[] {
  const writes: ItemUpdate[] = [];
  for (const [minute, all] of entries) {
    for (let i = 0; i < all.length; i += ENTRIES_PER_ITEM) {
      const atMs = minute * 60_000;
      writes.push({
        key: usageKeys.eventLog(atMs, randomBytes(9).toString('base64url')),
        set: [
          { attr: usageAttributes.entries, value: all.slice(i, i + ENTRIES_PER_ITEM).join(' ') },
          {
            attr: TABLE_SCHEMA.ttlAttribute,
            value: BigInt(Math.ceil((atMs + LOG_KEPT_MS) / 1_000)),
          },
        ],
        condition: { absent: TABLE_SCHEMA.partitionKey },
      });
    }
  }
  return writes;
}
