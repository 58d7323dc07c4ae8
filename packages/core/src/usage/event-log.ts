/**
 * Which acquires' usage events usage history has counted, and which cancellation of each lease
 * it counted, kept where later records can look them up.
 *
 * An acquire's usage event adds its estimate, and a refused acquire's cancellation takes it back
 * (facts.ts). A cancellation is not sure to follow a counted event: one written alone follows a
 * write whose answer was lost when the item could no longer tell whether it applied (its event
 * may never have reached the stream); a give-back whose answer was lost, and then a cancellation
 * written alone, may both land (a write held in the store lands late); and an event older than
 * the stream keeps is not counted at all. So a cancellation counts only if its lease's event was
 * counted, and only the first cancellation of a lease in stream order counts.
 *
 * The event and its cancellations are records of one item, so one shard holds them in order (or
 * a parent shard the event, read first), and each shard's records are judged in stream order
 * whatever order they are delivered in. Two facts are kept, for every reader of the stream alike
 * (the rows they count into are shared):
 * - each batch logs the events it counts, per minute of acquire, as items of their own, never
 *   overwritten (a replayed or split batch adds items). A cancellation whose event is not in its
 *   batch reads that log back from its own position in its shard until it finds the event
 *   (usually in the batch before), and only when it is not there, the whole minute;
 * - the cancellation that counts for a lease is claimed in an item of the lease's own, by a
 *   conditional write that a delivery again of the same record passes and any other
 *   cancellation of the lease fails.
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

/** How long log and claim items are kept: the stream's 24 hours and a day (a lease lives less). */
const LOG_KEPT_MS = STREAM_KEEPS_MS + 86_400_000;
/** Entries one log item holds at most (well under DynamoDB's 400 KB an item). */
const ENTRIES_PER_ITEM = 2_000;
/**
 * Items the first page of a lookup reads (the event is usually in the batch before); each next
 * page reads twice as many, up to 64.
 */
const FIRST_PAGE = 2;
/**
 * Where the claim of a lease's counted cancellation is kept, in its minute's partition (after
 * every log item: `~` sorts after the characters of a shard's hash).
 */
const CLAIM_PREFIX = '~cancelled#';

/**
 * Lease ids the log and the claims hold: the engine's are 22 characters of base64url. One written
 * by another program with a space (the log's separator) or past DynamoDB's key and item sizes is
 * not counted (the aggregator reports it unplaced) rather than failing its batch on every delivery.
 */
const LEASE_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Whether a usage event's lease id is one the log can hold. */
export const loggable = (lease: string): boolean => LEASE_ID.test(lease);

const minuteOf = (atMs: number) => Math.floor(atMs / 60_000);
const expiresAtS = (atMs: number) => BigInt(Math.ceil((atMs + LOG_KEPT_MS) / 1_000));
/** A record's identity as a claim holds it. */
const identity = (r: EventRecord) => `${shortHash(r.shard)}:${sortable(r.sequence)}`;

/**
 * Whether `r`'s lease's event was counted: the log of its minute read back from `r`'s position
 * in its shard, then, if the event is not there, every shard's (a parent shard's, or none).
 */
async function eventCounted(store: AdminStore, r: EventRecord): Promise<boolean> {
  const pk = usageKeys.eventLog(r.atMs, '').pk;
  const shard = `${shortHash(r.shard)}#`;
  const entry = `+${r.lease}`;
  const ranges: (readonly [string, string] | undefined)[] = [
    [shard, `${shard}${sortable(r.sequence)}~`],
    undefined, // the whole minute (a claim's value never names an event)
  ];
  for (const between of ranges) {
    let after: string | undefined;
    let limit = FIRST_PAGE;
    do {
      const page = await store.query(pk, {
        limit,
        descending: true,
        ...(between ? { between } : {}),
        ...(after ? { after } : {}),
      });
      for (const { state } of page.items) {
        const entries = state[usageAttributes.entries];
        if (typeof entries === 'string' && entries.split(' ').includes(entry)) return true;
      }
      after = page.next;
      limit = Math.min(64, 2 * limit);
    } while (after !== undefined);
  }
  return false;
}

/**
 * Claims `r` as its lease's counted cancellation: true when it is (or a delivery of `r` before
 * claimed it), false when another cancellation of the lease was counted.
 */
async function claimed(store: AdminStore, r: EventRecord): Promise<boolean> {
  const key = usageKeys.eventLog(r.atMs, `${CLAIM_PREFIX}${r.lease}`);
  const attr = usageAttributes.entries;
  const result = await store.update({
    key,
    set: [
      { attr, value: identity(r) },
      { attr: TABLE_SCHEMA.ttlAttribute, value: expiresAtS(r.atMs) },
    ],
    condition: {
      or: [{ absent: TABLE_SCHEMA.partitionKey }, { attr, op: '=', value: identity(r) }],
    },
  });
  return result.ok;
}

/**
 * Judges a batch's records: those that count (all but the cancellations that must not), and the
 * log items that record the events the batch counts (write them before the batch is reported
 * done; in any order with its rows).
 */
export async function judged<T extends { contribution: Contribution; position: StreamPosition }>(
  store: AdminStore,
  records: readonly T[],
): Promise<{ readonly kept: T[]; readonly writes: ItemUpdate[] }> {
  const events = records.map(({ contribution: c, position: p }): EventRecord | undefined =>
    c.event
      ? { lease: c.id, atMs: c.atMs, kind: c.event, shard: p.shard, sequence: p.sequence }
      : undefined,
  );
  const { skipped, writes } = await judgedEvents(
    store,
    events.filter((e) => e !== undefined),
  );
  return { kept: records.filter((_, i) => !skipped.has(events[i] as EventRecord)), writes };
}

/** Judges a batch's acquire-kind records: the cancellations that must not count, the log items. */
async function judgedEvents(
  store: AdminStore,
  records: readonly EventRecord[],
): Promise<{ readonly skipped: ReadonlySet<EventRecord>; readonly writes: ItemUpdate[] }> {
  const ordered = inStreamOrder(records);
  const counted = new Set<string>(); // leases whose event the batch counts
  const cancelled = new Set<string>(); // leases whose cancellation the batch counts
  const skipped = new Set<EventRecord>();
  const claims: Promise<void>[] = [];
  const entries = new Map<string, { first: EventRecord; all: string[] }>();
  for (const r of ordered) {
    if (r.kind === 'estimate') {
      counted.add(r.lease);
      const at = `${minuteOf(r.atMs)} ${r.shard}`;
      const group = entries.get(at) ?? { first: r, all: [] };
      entries.set(at, group);
      group.all.push(`+${r.lease}`);
      continue;
    }
    if (cancelled.has(r.lease)) {
      skipped.add(r); // the batch counts an earlier one
      continue;
    }
    cancelled.add(r.lease);
    // Its event later in the batch (another shard's, read by hand) was not counted before it.
    const eventLater =
      !counted.has(r.lease) && records.some((o) => o.lease === r.lease && o.kind === 'estimate');
    const judge = async () => {
      const counts =
        (counted.has(r.lease) || (!eventLater && (await eventCounted(store, r)))) &&
        (await claimed(store, r));
      if (!counts) skipped.add(r);
    };
    claims.push(judge());
  }
  await Promise.all(claims);
  return { skipped, writes: logWrites([...entries.values()]) };
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
 * New log items holding each group's events: keyed by the minute, then the shard and the first
 * record's position, and a random suffix (no log item is ever written twice).
 */
function logWrites(groups: readonly { first: EventRecord; all: string[] }[]): ItemUpdate[] {
  const writes: ItemUpdate[] = [];
  for (const { first, all } of groups) {
    const atMs = minuteOf(first.atMs) * 60_000;
    const position = `${shortHash(first.shard)}#${sortable(first.sequence)}`;
    for (let i = 0; i < all.length; i += ENTRIES_PER_ITEM) {
      const id = `${position}#${randomBytes(9).toString('base64url')}`;
      writes.push({
        key: usageKeys.eventLog(atMs, id),
        set: [
          { attr: usageAttributes.entries, value: all.slice(i, i + ENTRIES_PER_ITEM).join(' ') },
          { attr: TABLE_SCHEMA.ttlAttribute, value: expiresAtS(atMs) },
        ],
        condition: { absent: TABLE_SCHEMA.partitionKey },
      });
    }
  }
  return writes;
}
