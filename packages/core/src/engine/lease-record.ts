/**
 * A lease's record in its lease item: what each settlement writes there (its totals, reports,
 * version, and debt charged into later calendar windows) and how it is read back.
 */
import { canonicalJson } from '../canonical.js';
import { itemKeys, leaseAttributes as L, TABLE_SCHEMA } from '../store/schema.js';
import type { ItemState, ItemUpdate } from '../store/types.js';
import type { LaterDebts } from './items.js';
import type { LeaseClaims } from './lease.js';
import type { Usage } from './limits.js';
import type { EngineState, LeaseRecord } from './state.js';
import { contextToWire } from './usage-context.js';

/**
 * The lease item's next version: what a settlement records of the lease (`next`), written on
 * the condition that the item still holds `record` (none yet: that it does not exist).
 */
export function leaseUpdate(
  engine: EngineState,
  claims: LeaseClaims,
  record: LeaseRecord | undefined,
  next: LeaseRecord,
): ItemUpdate {
  return {
    key: itemKeys.lease(claims.id),
    set: [
      { attr: L.totals, value: canonicalJson(next.totals) },
      { attr: L.reported, value: canonicalJson(next.reported) },
      { attr: L.version, value: next.version },
      { attr: L.settled, value: next.settled ? 1n : 0n },
      ...(next.fingerprint ? [{ attr: L.fingerprint, value: next.fingerprint }] : []),
      ...(claims.context
        ? [
            {
              attr: L.context,
              // With the acquire's estimate: usage history adds each settlement's difference
              // from the totals before it, the estimate's at the first.
              value: JSON.stringify([
                claims.acquiredAtMs,
                contextToWire(claims.context),
                claims.usage,
              ]),
            },
          ]
        : []),
      // Emptied where it was set, so that a reader never takes back a debt twice.
      ...(next.later || record?.later
        ? [{ attr: L.later, value: canonicalJson(next.later ?? {}) }]
        : []),
      {
        attr: TABLE_SCHEMA.ttlAttribute,
        value: BigInt(Math.ceil(claims.expiresAtMs / 1000) + engine.tuning.ttlSlackSeconds),
      },
    ],
    condition: record
      ? { attr: L.version, op: '=', value: record.version }
      : { absent: TABLE_SCHEMA.partitionKey },
  };
}

/** The lease's record as its item holds it (undefined: no settlement yet). */
export function leaseRecordFrom(item: ItemState | undefined): LeaseRecord | undefined {
  if (!item) return undefined;
  const [t, r, n, st, f, dl] = [
    L.totals,
    L.reported,
    L.version,
    L.settled,
    L.fingerprint,
    L.later,
  ].map((attr) => item[attr]);
  if (typeof t !== 'string' || typeof n !== 'bigint') return undefined;
  const later = typeof dl === 'string' ? (JSON.parse(dl) as LeaseRecord['later']) : undefined;
  return {
    version: n,
    totals: JSON.parse(t) as Usage,
    reported: typeof r === 'string' ? (JSON.parse(r) as Usage) : {},
    settled: st === 1n,
    ...(typeof f === 'string' ? { fingerprint: f } : {}),
    ...(later && Object.keys(later).length > 0 ? { later } : {}),
  };
}

/** A lease record's debts in later windows, by item index (fresh maps: a plan fills them). */
export function laterDebts(record: LeaseRecord | undefined): LaterDebts[] {
  const byItem: LaterDebts[] = [];
  for (const [at, debt] of Object.entries(record?.later ?? {})) {
    const cut = at.indexOf('/');
    const i = Number(at.slice(0, cut));
    const debts = byItem[i] ?? new Map();
    debts.set(at.slice(cut + 1), debt);
    byItem[i] = debts;
  }
  return byItem;
}

/** The record's form of {@link laterDebts} (undefined when none). */
export function laterRecord(byItem: readonly LaterDebts[]): LeaseRecord['later'] {
  const entries = byItem.flatMap((debts, i) =>
    [...(debts ?? new Map()).entries()].map(([name, debt]) => [`${i}/${name}`, debt] as const),
  );
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}
