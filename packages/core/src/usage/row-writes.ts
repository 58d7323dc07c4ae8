/**
 * The usage aggregator's writes of one row (aggregator.ts): each record's part in the row, the
 * conditional update that adds the parts past the row's marks and moves them, and the parts of a
 * batch split so that no one update grows past what DynamoDB takes.
 */

import { STANDARD_METRICS } from '../engine/limits.js';
import { own } from '../names.js';
import type { Assignment, Condition, ItemKey, ItemState } from '../store/types.js';
import type { Contribution, StreamPosition } from './facts.js';
import { markCondition, markSequence, markValue } from './marks.js';
import { addDeltas, type RowDelta, type RowWrite, rowAssignments } from './periods.js';

/** What a row DynamoDB refused was written without: custom metrics and refusal names, or all. */
export type Reduction = 'custom' | 'all';

/** One record's part in one row. */
export interface Part {
  readonly contribution: Contribution;
  readonly position: StreamPosition;
  /** The row's mark attribute for the record's shard and kind. */
  readonly mark: string;
  /** Its sortable sequence number. */
  readonly sequence: string;
  readonly delta: RowDelta;
  /** Whether this part is where the record counts toward the report (its first row). */
  readonly reported: boolean;
}

const STANDARD: ReadonlySet<string> = new Set(STANDARD_METRICS);
/**
 * Most attributes one row's write adds to: DynamoDB holds an update expression to 4 KB. A batch
 * adding more to one row writes it in parts, each moving the marks past what it added.
 */
const MAX_ROW_ATTRIBUTES = 64;

/** The parts past the row's marks as read. */
export function past(parts: readonly Part[], marks: ItemState): Part[] {
  return parts.filter((p) => {
    const seen = own(marks, p.mark);
    return typeof seen !== 'string' || p.sequence > markSequence(seen);
  });
}

/** The row update adding `parts` and moving their marks. */
export function rowUpdate(
  write: Omit<RowWrite, 'delta'>,
  parts: readonly Part[],
  marks: ItemState | undefined,
  reduction: Reduction | undefined,
): { key: ItemKey; set: Assignment[]; condition: Condition } {
  let delta = parts.map((p) => p.delta).reduce(addDeltas);
  if (reduction) delta = reduced(delta, reduction);
  const adds = rowAssignments({ ...write, delta });
  // Parts that add up to nothing still move the marks: left unmarked, a reader whose batch
  // split them differently could count one part without the other.
  const last = new Map<string, Part>(); // each mark's last part (parts are in stream order)
  const first = new Map<string, Part>();
  for (const p of parts) {
    last.set(p.mark, p);
    if (!first.has(p.mark)) first.set(p.mark, p);
  }
  const conditions = [...first].map(([attr, p]) => {
    if (!marks) return markCondition(attr, { before: p.sequence });
    const seen = own(marks, attr);
    return markCondition(attr, { seen: typeof seen === 'string' ? seen : undefined });
  });
  return {
    key: write.key,
    set: [
      ...(adds.length ? adds : write.fixed),
      ...[...last].map(([attr, p]) => ({ attr, value: markValue(p.position) })),
    ],
    condition: conditions.length === 1 ? (conditions[0] as Condition) : { and: conditions },
  };
}

/** A delta without custom metrics and refusal names (`custom`), or without anything (`all`). */
export function reduced(delta: RowDelta, reduction: Reduction): RowDelta {
  if (reduction === 'all') return { metrics: new Map(), leases: 0n, denied: new Map() };
  const metrics = new Map([...delta.metrics].filter(([metric]) => STANDARD.has(metric)));
  return { metrics, leases: delta.leases, denied: new Map() };
}

/** The attributes a part adds to in a row (metrics, refusals by name, its mark). */
const attributesOf = (part: Part): string[] => [
  ...[...part.delta.metrics.keys()].map((m) => `m ${m}`),
  ...[...part.delta.denied.keys()].map((n) => `d ${n}`),
  part.mark,
];

/**
 * A row's parts in writes of at most {@link MAX_ROW_ATTRIBUTES} attributes each (almost always
 * one write). Each write takes the next parts in stream order, so each moves its marks past
 * what it added and the next finds them there.
 */
export function* inParts(parts: readonly Part[]): Generator<Part[]> {
  let chunk: Part[] = [];
  let attributes = new Set<string>();
  for (const part of parts) {
    const adds = attributesOf(part);
    const merged = new Set([...attributes, ...adds]);
    if (chunk.length > 0 && merged.size > MAX_ROW_ATTRIBUTES) {
      yield chunk;
      chunk = [];
      attributes = new Set(adds);
    } else {
      attributes = merged;
    }
    chunk.push(part);
  }
  if (chunk.length > 0) yield chunk;
}
