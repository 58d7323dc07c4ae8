/**
 * What the usage aggregator reads off the table's stream: each record's change of one item, where
 * the stream holds it (shard and sequence number), and what it adds to usage history:
 * - an acquire leaves a usage event (lease id, estimate, context) on the first item it writes;
 *   a refused acquire that had written it leaves a cancellation (of that estimate) there;
 * - a settlement writes the lease's totals and context (with the acquire's estimate) on the
 *   lease item, so each of its records adds the difference from the totals before it;
 * - a process writes each gathering of refusals as an item of its own (see denials.ts).
 *
 * Every record adds a difference, never a total: what a lease adds over all its records is its
 * final totals, in whatever order they are counted.
 */

import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { amountOf, type Usage } from '../engine/limits.js';
import {
  CANCELLED,
  type ContextWire,
  contextFromWire,
  type UsageContext,
  type UsageEvent,
} from '../engine/usage-context.js';
import { unmarshal } from '../store/dynamodb.js';
import {
  denialAttributes,
  itemAttributes,
  itemKeys,
  leaseAttributes,
  TABLE_SCHEMA,
} from '../store/schema.js';
import type { ItemKey, ItemState } from '../store/types.js';
import type { DenialBatch } from './denials.js';

/** Where a record is in the table's stream. */
export interface StreamPosition {
  /** The shard's id. */
  readonly shard: string;
  /** The record's sequence number (digits; increasing along the shard). */
  readonly sequence: string;
  /** When the record was written, as the stream gives it (rounded down), epoch ms. */
  readonly atMs: number;
}

/** One change of one item, as a stream record carries it. */
export interface ItemChange {
  readonly key: ItemKey;
  readonly oldImage?: ItemState | undefined;
  readonly newImage?: ItemState | undefined;
  /** Where the record is in the stream: what the aggregator counts once by. */
  readonly position?: StreamPosition | undefined;
}

/** A stream record, as Lambda's DynamoDB event and the DynamoDB Streams API both carry it. */
export interface StreamRecord {
  readonly dynamodb?: {
    readonly Keys?: Record<string, unknown>;
    readonly OldImage?: Record<string, unknown>;
    readonly NewImage?: Record<string, unknown>;
    readonly SequenceNumber?: string;
    /** Seconds in Lambda's event, a Date from the DynamoDB Streams API. */
    readonly ApproximateCreationDateTime?: number | Date;
  };
}

/**
 * The change a stream record describes (none for a record without keys), with its position
 * when the shard it was read from is given (Lambda's event names it with a tumbling window; the
 * DynamoDB Streams API by the shard read).
 */
export function changeOf(record: StreamRecord, shard?: string): ItemChange | undefined {
  const image = (raw: Record<string, unknown> | undefined) =>
    unmarshal(raw as Record<string, AttributeValue> | undefined);
  const keys = image(record.dynamodb?.Keys);
  if (!keys) return undefined;
  const sequence = record.dynamodb?.SequenceNumber;
  const created = record.dynamodb?.ApproximateCreationDateTime;
  const atMs = created instanceof Date ? created.getTime() : (created ?? 0) * 1_000;
  return {
    key: {
      pk: String(keys[TABLE_SCHEMA.partitionKey]),
      sk: String(keys[TABLE_SCHEMA.sortKey]),
    },
    oldImage: image(record.dynamodb?.OldImage),
    newImage: image(record.dynamodb?.NewImage),
    ...(shard !== undefined && sequence !== undefined
      ? { position: { shard, sequence, atMs } }
      : {}),
  };
}

/**
 * The kinds of record that add to usage history. Records of one kind from one shard are counted
 * in stream order; records of different kinds may be counted in any order (a settlement before
 * its acquire: each adds its own difference).
 */
export type ContributionKind = 'acquire' | 'settle' | 'denied';

/** What one record adds to the usage history of the scopes it counts for. */
export interface Contribution {
  readonly kind: ContributionKind;
  /** The lease (or gathering of refusals) it is about. */
  readonly id: string;
  /** When the lease was acquired (or the gathering began): the periods it counts in. */
  readonly atMs: number;
  readonly context: UsageContext;
  /** Differences by metric (never zero). */
  readonly metrics: ReadonlyMap<string, bigint>;
  /** Leases counted: +1 when a lease starts to use something, -1 when it stops. */
  readonly leases: bigint;
  /** Refusals by limit name. */
  readonly denied: ReadonlyMap<string, bigint>;
  /** Of an acquire's record: its event's estimate, or a cancellation (see event-log.ts). */
  readonly event?: 'estimate' | 'cancellation';
}

const DENIALS_PREFIX = itemKeys.denials('').pk;
const LEASE_PREFIX = itemKeys.lease('').pk;

/**
 * A metric's amount as the engine writes it: a whole number from 0 to MAX_AMOUNT (2^53 - 1). Any
 * other (beyond 2^53, negative, text) throws: its record is none the engine wrote, and counted
 * it would fail or poison the rows it shares with others (DynamoDB refuses a sum past 38 digits).
 */
function written(usage: Usage, metric: string): bigint {
  const amount: unknown = amountOf(usage, metric);
  if (!(Number.isSafeInteger(amount) && (amount as number) >= 0))
    throw new RangeError(`${metric}: no amount the engine writes`);
  return BigInt(amount as number);
}

/** `next - before`, per metric, the zeros left out. */
function difference(next: Usage, before: Usage): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const metric of new Set([...Object.keys(before), ...Object.keys(next)])) {
    const delta = written(next, metric) - written(before, metric);
    if (delta !== 0n) out.set(metric, delta);
  }
  return out;
}

const used = (u: Usage) => (Object.values(u).some((v) => v > 0) ? 1n : 0n);
const none: ReadonlyMap<string, bigint> = new Map();

/** What a settlement's record adds: its totals less those before it (the estimate, at first). */
function settled(change: ItemChange, next: ItemState): Contribution | undefined {
  const c = next[leaseAttributes.context];
  const t = next[leaseAttributes.totals];
  if (typeof c !== 'string' || typeof t !== 'string') return undefined;
  const [atMs, wire, estimate] = JSON.parse(c) as [number, ContextWire, Usage?];
  const old = change.oldImage?.[leaseAttributes.totals];
  const before = typeof old === 'string' ? (JSON.parse(old) as Usage) : (estimate ?? {});
  const totals = JSON.parse(t) as Usage;
  const metrics = difference(totals, before);
  const leases = used(totals) - used(before);
  if (metrics.size === 0 && leases === 0n) return undefined;
  const id = change.key.pk.slice(LEASE_PREFIX.length);
  return {
    kind: 'settle',
    id,
    atMs,
    context: contextFromWire(wire),
    metrics,
    leases,
    denied: none,
  };
}

/** What a gathering of refusals adds (its counts less any it held before). */
function refused(change: ItemChange, next: ItemState): Contribution | undefined {
  const dn = next[denialAttributes.batch];
  if (typeof dn !== 'string') return undefined;
  const [atMs, counts, wire] = JSON.parse(dn) as DenialBatch;
  const old = change.oldImage?.[denialAttributes.batch];
  const before = typeof old === 'string' ? (JSON.parse(old) as DenialBatch)[1] : {};
  const denied = difference(counts, before);
  if (denied.size === 0) return undefined;
  const id = `denied.${change.key.pk.slice(DENIALS_PREFIX.length)}`;
  return {
    kind: 'denied',
    id,
    atMs,
    context: contextFromWire(wire),
    metrics: none,
    leases: 0n,
    denied,
  };
}

/** What an acquire's usage event adds: its estimate, or the estimate's cancellation. */
function acquired(ev: string): Contribution {
  const [leaseId, version, atMs, , usage, wire] = JSON.parse(ev) as UsageEvent;
  const event = version === CANCELLED ? 'cancellation' : 'estimate';
  const sign = event === 'estimate' ? 1n : -1n;
  const metrics = new Map([...difference(usage, {})].map(([m, n]) => [m, sign * n]));
  return {
    kind: 'acquire',
    id: leaseId,
    atMs,
    context: contextFromWire(wire),
    metrics,
    leases: sign * used(usage),
    denied: none,
    event,
  };
}

/** The latest time a record may count at: its periods' keys are ISO 8601 with a 4-digit year. */
const LATEST_MS = Date.parse('9999-01-01T00:00:00.000Z');

/**
 * `read()`'s contribution, or `unreadable` when what the item holds is none the engine writes
 * (not JSON, not of the shape, a usage that is not whole numbers, a time no period holds):
 * written by hand or by another program, it is not counted, and holds up nothing else.
 */
function readable(
  read: () => Contribution | undefined,
): Contribution | undefined | typeof UNREADABLE {
  try {
    const contribution = read();
    if (contribution === undefined) return undefined;
    const { atMs } = contribution;
    if (!(Number.isSafeInteger(atMs) && atMs >= 0 && atMs < LATEST_MS)) return UNREADABLE;
    return contribution;
  } catch {
    return UNREADABLE;
  }
}
const UNREADABLE = Symbol('unreadable');

/**
 * What one change adds to usage history (nothing, or one or two contributions). A part of it no
 * engine writes is left out, and its item's key told to `unreadable`.
 */
export function contributionsOf(
  change: ItemChange,
  unreadable: (item: string) => void = () => {},
): Contribution[] {
  const next = change.newImage;
  if (!next) return [];
  const out: Contribution[] = [];
  const take = (read: () => Contribution | undefined) => {
    const contribution = readable(read);
    if (contribution === UNREADABLE) unreadable(`${change.key.pk} ${change.key.sk}`);
    else if (contribution) out.push(contribution);
  };
  if (change.key.pk.startsWith(LEASE_PREFIX)) take(() => settled(change, next));
  if (change.key.pk.startsWith(DENIALS_PREFIX)) take(() => refused(change, next));
  const ev = next[itemAttributes.usageEvent];
  if (typeof ev === 'string' && ev !== change.oldImage?.[itemAttributes.usageEvent]) {
    take(() => {
      const event = acquired(ev);
      return event.metrics.size > 0 || event.leases !== 0n ? event : undefined;
    });
  }
  return out;
}
