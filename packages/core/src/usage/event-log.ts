/**
 * Which acquires' usage events usage history has counted, kept where their cancellations can
 * look them up.
 *
 * An acquire's usage event adds its estimate, and a refused acquire's cancellation takes it back
 * (facts.ts). A cancellation is not sure to follow a counted event: one written alone follows a
 * write whose answer was lost when the item could no longer tell whether it applied (its event
 * may never have reached the stream); a give-back whose answer was lost, and then a cancellation
 * written alone, may both land (a write held in the store lands late); and an event older than
 * the stream keeps is not counted at all. So a cancellation counts only if its lease's event was
 * counted and no cancellation of that lease before it in the stream was.
 *
 * The event and its cancellations are records of one item, so one shard holds them in order (or
 * a parent shard the event, read first). Each shard's records are judged in stream order, so a
 * lease's first cancellation after its event counts, however often and in whatever order the
 * records are delivered. When a reader comes to a cancellation, its event is in the same batch or
 * in one it counted before; so each batch logs the events and cancellations it counts, per minute
 * of acquire, as items of their own, never overwritten (a replayed or split batch adds items).
 * Each reader of the stream keeps its own log (`reader`: the same name for every process that
 * reads as one, as Lambda's containers do): its own batches are contiguous runs of a shard, so a
 * batch that logged a cancellation also logged the lease's event, or a later one did. A
 * cancellation whose event is not in its batch reads its reader's log of that minute and shard
 * back from its own position to the event's batch: usually one small item (the batch before).
 * Only a cancellation whose event was never counted, or was counted in a parent shard, reads the
 * reader's whole minute.
 */

import { randomBytes } from 'node:crypto';
import { TABLE_SCHEMA, usageAttributes, usageKeys } from '../store/schema.js';
import type { AdminStore, ItemUpdate } from '../store/types.js';
import type { Contribution, StreamPosition } from './facts.js';
import { STREAM_KEEPS_MS, shortHash, sortable } from './marks.js';

/** One acquire-kind record of a batch, as the log judges it. */
export interface EventRecord {
  readonly lease: string;
  /** When the lease was acquired (its event and cancellations carry the same time). */
  readonly atMs: number;
  readonly kind: 'estimate' | 'cancellation';
  readonly shard: string;
  /** Its sequence number in the stream. */
  readonly sequence: string;
}

/** What the log knows of one lease. */
interface Known {
  /** Its event was counted. */
  estimated: boolean;
  /** Sequence numbers of the cancellations counted. */
  readonly cancellations: Set<string>;
}

/** How long a log item is kept: the stream's 24 hours and a day's margin (a lease lives less). */
const LOG_KEPT_MS = STREAM_KEEPS_MS + 86_400_000;
/** Entries one log item holds at most (well under DynamoDB's 400 KB an item). */
const ENTRIES_PER_ITEM = 2_000;
/**
 * Items the first page of a lookup reads (the event is usually in the batch before); each next
 * page reads twice as many, up to 64.
 */
const FIRST_PAGE = 2;

const minuteOf = (atMs: number) => Math.floor(atMs / 60_000);
const estimated = (lease: string) => `+${lease}`;
const cancelled = (lease: string, sequence: string) => `-${lease}:${sequence}`;

/** Adds what one log item's entries say of `lease`; whether its event was there. */
function learn(known: Known, entries: string, lease: string): boolean {
  let found = false;
  for (const entry of entries.split(' ')) {
    if (entry === estimated(lease)) found = true;
    else if (entry.startsWith(`-${lease}:`)) known.cancellations.add(entry.slice(lease.length + 2));
  }
  known.estimated ||= found;
  return found;
}

/**
 * What `reader`'s earlier batches counted of `r`'s lease: its log of the minute and `r`'s shard,
 * read back from `r`'s position through the items of the batch that logged the event; then, if
 * the event is not there, the reader's whole minute (the event may be in a parent shard, or
 * never counted).
 */
async function lookUp(store: AdminStore, reader: string, r: EventRecord): Promise<Known> {
  const known: Known = { estimated: false, cancellations: new Set() };
  const pk = usageKeys.eventLog(r.atMs, '').pk;
  const shard = `${reader}#${shortHash(r.shard)}#`;
  const ranges: (readonly [string, string])[] = [
    [shard, `${shard}${sortable(r.sequence)}~`],
    [`${reader}#`, `${reader}#~`],
  ];
  for (const [i, between] of ranges.entries()) {
    let found: string | undefined; // the position of the first item that logged the event
    let after: string | undefined;
    let limit = FIRST_PAGE;
    do {
      const page = await store.query(pk, {
        limit,
        descending: true,
        between,
        ...(after ? { after } : {}),
      });
      for (const { key, state } of page.items) {
        const position = key.sk.slice(0, key.sk.lastIndexOf('#'));
        // Items of one position are the same batch delivered again: read them all.
        if (i === 0 && found !== undefined && position !== found) return known;
        const entries = state[usageAttributes.entries];
        if (typeof entries === 'string' && learn(known, entries, r.lease)) found ??= position;
      }
      after = page.next;
      limit = Math.min(64, 2 * limit);
    } while (after !== undefined);
    if (found !== undefined) return known;
  }
  return known;
}

/**
 * Judges a batch's records: those that count (all but the cancellations that must not), and the
 * log items that record what the batch counts (write them before the batch is reported done; in
 * any order with its rows).
 */
export async function judged<T extends { contribution: Contribution; position: StreamPosition }>(
  store: AdminStore,
  reader: string,
  records: readonly T[],
): Promise<{ readonly kept: T[]; readonly writes: ItemUpdate[] }> {
  const events = records.map(({ contribution: c, position: p }): EventRecord | undefined =>
    c.event
      ? { lease: c.id, atMs: c.atMs, kind: c.event, shard: p.shard, sequence: p.sequence }
      : undefined,
  );
  const { skipped, writes } = await judgedEvents(
    store,
    reader,
    events.filter((e) => e !== undefined),
  );
  return { kept: records.filter((_, i) => !skipped.has(events[i] as EventRecord)), writes };
}

/** Judges a batch's acquire-kind records: the cancellations that must not count, the log items. */
async function judgedEvents(
  store: AdminStore,
  reader: string,
  records: readonly EventRecord[],
): Promise<{ readonly skipped: ReadonlySet<EventRecord>; readonly writes: ItemUpdate[] }> {
  const ordered = inStreamOrder(records);
  const inBatch = new Set(ordered.filter((r) => r.kind === 'estimate').map((r) => r.lease));
  const known = new Map<string, Known>();
  const skipped = new Set<EventRecord>();
  const entries = new Map<string, { first: EventRecord; all: string[] }>();
  const log = (r: EventRecord, entry: string) => {
    const at = `${minuteOf(r.atMs)} ${r.shard}`;
    const group = entries.get(at) ?? { first: r, all: [] };
    entries.set(at, group);
    group.all.push(entry);
  };
  for (const r of ordered) {
    if (r.kind === 'estimate') {
      known.set(r.lease, { estimated: true, cancellations: new Set() });
      log(r, estimated(r.lease));
      continue;
    }
    let k = known.get(r.lease);
    if (!k) {
      k = inBatch.has(r.lease)
        ? { estimated: false, cancellations: new Set() } // before its event: never counted
        : await lookUp(store, reader, r);
      known.set(r.lease, k);
    }
    const again = [...k.cancellations].some((s) => s !== r.sequence);
    if (!k.estimated || again) {
      skipped.add(r);
      continue;
    }
    k.cancellations.add(r.sequence);
    log(r, cancelled(r.lease, r.sequence));
  }
  return { skipped, writes: logWrites(reader, [...entries.values()]) };
}

/** Each shard's records in stream order, whatever order they came in (shards as they came). */
function inStreamOrder(records: readonly EventRecord[]): EventRecord[] {
  const shards = new Map<string, EventRecord[]>();
  for (const r of records) shards.set(r.shard, [...(shards.get(r.shard) ?? []), r]);
  return [...shards.values()].flatMap((run) =>
    run.sort((a, b) => sortable(a.sequence).localeCompare(sortable(b.sequence))),
  );
}

/**
 * New log items holding each group's entries: keyed by the minute, then the reader, the shard and
 * the first record's position, and a random suffix (no log item is ever written twice).
 */
function logWrites(
  reader: string,
  groups: readonly { first: EventRecord; all: string[] }[],
): ItemUpdate[] {
  const writes: ItemUpdate[] = [];
  for (const { first, all } of groups) {
    const atMs = minuteOf(first.atMs) * 60_000;
    const position = `${reader}#${shortHash(first.shard)}#${sortable(first.sequence)}`;
    for (let i = 0; i < all.length; i += ENTRIES_PER_ITEM) {
      const id = `${position}#${randomBytes(9).toString('base64url')}`;
      writes.push({
        key: usageKeys.eventLog(atMs, id),
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
