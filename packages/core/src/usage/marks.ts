/**
 * How a usage row is counted once per stream record without a record per lease: each row keeps,
 * per shard of the stream and kind of record, a mark of the last record it counted, and each
 * update adds only records past the mark, moving it in the same write (a condition on the mark
 * as it was).
 *
 * That rests on the stream's order. DynamoDB Streams hands each shard's records over in order,
 * and Lambda's documentation for DynamoDB Streams says that "records are always processed in
 * order the first time. If records are processed more than once, they might be processed out of
 * order." So a record at or before a row's mark for its shard and kind has been counted there: a
 * replayed, duplicated, reordered or split batch, or a second reader of the stream, adds nothing.
 * Records of different kinds (an acquire's event on a limit's item, a settlement on the lease's
 * item) carry their own marks, so a settlement counted before its acquire (a test reading the
 * stream by hand, or another shard) does not hide the acquire.
 *
 * A mark whose record is older than the stream keeps records (24 hours) guards nothing any more:
 * it is removed the next time the row is written, and no record that old is counted.
 */

import { createHash } from 'node:crypto';
import type { Condition, ItemState } from '../store/types.js';
import type { ContributionKind, StreamPosition } from './facts.js';

/** Digits a sequence number is padded to (DynamoDB Streams' longest), so text order is number order. */
const SEQUENCE_DIGITS = 40;
/** The prefix of every mark attribute. */
const MARK_PREFIX = 'w';
/**
 * How long a stream keeps a record: 24 hours in DynamoDB Streams. The aggregator counts no record
 * older (DynamoDB Local may keep them longer, and `npm start` reads its stream again from the
 * oldest record each time it starts).
 */
export const STREAM_KEEPS_MS = 24 * 3_600_000;
/** How long after its record a mark is kept: the stream's 24 hours, and an hour's margin. */
export const MARK_KEPT_MS = STREAM_KEEPS_MS + 3_600_000;

const KIND_LETTER: Readonly<Record<ContributionKind, string>> = {
  acquire: 'a',
  settle: 's',
  denied: 'd',
};

/**
 * The attribute holding a row's mark for one shard and kind: `w<kind>_<hash of the shard id>`
 * (shard ids are long; 12 characters of SHA-256 keep marks small and apart).
 */
export function markAttribute(kind: ContributionKind, shard: string): string {
  return `${MARK_PREFIX}${KIND_LETTER[kind]}_${shortHash(shard)}`;
}

/** 12 characters of SHA-256 of a long id (a shard's, a reader's): short, and apart. */
export const shortHash = (id: string): string =>
  createHash('sha256').update(id).digest('base64url').slice(0, 12);

/** Whether an attribute is a mark. */
export const isMark = (attr: string): boolean => /^w[asd]_/.test(attr);

/** A sequence number as marks compare it. */
export function sortable(sequence: string): string {
  if (!/^\d{1,40}$/.test(sequence))
    throw new Error(`not a stream sequence number: ${JSON.stringify(sequence)}`);
  return sequence.padStart(SEQUENCE_DIGITS, '0');
}

/** A mark's stored value: the record's sortable sequence number, then when it was written. */
export const markValue = (position: StreamPosition): string =>
  `${sortable(position.sequence)}:${position.atMs}`;

/** The sortable sequence number a stored mark holds. */
export const markSequence = (value: string): string => value.slice(0, SEQUENCE_DIGITS);

/** When the record a stored mark names was written (epoch ms; 0 when the stream gave none). */
export const markAtMs = (value: string): number => Number(value.slice(SEQUENCE_DIGITS + 1)) || 0;

/**
 * The condition under which adding records from `first` on is right: the mark is absent or
 * before `first` (a first try, not knowing the row), or it is exactly as read (`seen`).
 */
export function markCondition(
  attr: string,
  expected: { readonly before: string } | { readonly seen: string | undefined },
): Condition {
  if ('before' in expected)
    return { or: [{ absent: attr }, { attr, op: '<', value: expected.before }] };
  return expected.seen === undefined ? { absent: attr } : { attr, op: '=', value: expected.seen };
}

/** The marks of an item older than the stream keeps, at `nowMs`: safe to remove. */
export function staleMarks(item: ItemState | undefined, nowMs: number): string[] {
  if (!item) return [];
  return Object.entries(item).flatMap(([attr, value]) =>
    isMark(attr) &&
    typeof value === 'string' &&
    markAtMs(value) > 0 && // a record of unknown time is never taken for an old one
    markAtMs(value) < nowMs - MARK_KEPT_MS
      ? [attr]
      : [],
  );
}
