/**
 * What the usage aggregator reads off the table's stream: each record's change of one item, and
 * the facts it carries about leases ("lease L stands at totals T as of version V"):
 * - an acquire leaves a usage event (lease id, estimate, context) on the first item it writes;
 *   a refused acquire that had written it leaves a cancellation there;
 * - a settlement writes the lease's totals, version and context on the lease item;
 * - a process writes each gathering of refusals as an item of its own (see denials.ts).
 */

import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { Usage } from '../engine/limits.js';
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

/** One change of one item, as a stream record carries it. */
export interface ItemChange {
  readonly key: ItemKey;
  readonly oldImage?: ItemState | undefined;
  readonly newImage?: ItemState | undefined;
}

/** A stream record, as Lambda's DynamoDB event and the DynamoDB Streams API both carry it. */
export interface StreamRecord {
  readonly dynamodb?: {
    readonly Keys?: Record<string, unknown>;
    readonly OldImage?: Record<string, unknown>;
    readonly NewImage?: Record<string, unknown>;
  };
}

/** The change a stream record describes (none for a record without keys). */
export function changeOf(record: StreamRecord): ItemChange | undefined {
  const image = (raw: Record<string, unknown> | undefined) =>
    unmarshal(raw as Record<string, AttributeValue> | undefined);
  const keys = image(record.dynamodb?.Keys);
  if (!keys) return undefined;
  return {
    key: {
      pk: String(keys[TABLE_SCHEMA.partitionKey]),
      sk: String(keys[TABLE_SCHEMA.sortKey]),
    },
    oldImage: image(record.dynamodb?.OldImage),
    newImage: image(record.dynamodb?.NewImage),
  };
}

/** Where a lease's usage stands, as one record says. */
export interface LeaseFact {
  readonly leaseId: string;
  /** 0: the acquire's estimate; n: the n-th settlement; MAX_SAFE_INTEGER: cancelled. */
  readonly version: number;
  readonly totals: Usage;
  readonly acquiredAtMs: number;
  /** Until when the lease can still change (its record is kept a while longer). */
  readonly expiresAtMs: number;
  readonly context: UsageContext;
  /** Refusals by limit name (a gathering of refusals, which has no usage). */
  readonly denied?: Usage;
}

const DENIALS_PREFIX = itemKeys.denials('').pk;
const LEASE_PREFIX = itemKeys.lease('').pk;

/** The lease facts one change carries (none, one or two). */
export function factsOf(change: ItemChange): LeaseFact[] {
  const next = change.newImage;
  if (!next) return [];
  const facts: LeaseFact[] = [];
  const c = next[leaseAttributes.context];
  const t = next[leaseAttributes.totals];
  const n = next[leaseAttributes.version];
  const ttl = next[TABLE_SCHEMA.ttlAttribute];
  if (change.key.pk.startsWith(LEASE_PREFIX) && typeof c === 'string' && typeof t === 'string') {
    const [acquiredAtMs, context] = JSON.parse(c) as [number, ContextWire];
    facts.push({
      leaseId: change.key.pk.slice(LEASE_PREFIX.length),
      version: typeof n === 'bigint' ? Number(n) : 1,
      totals: JSON.parse(t) as Usage,
      acquiredAtMs,
      expiresAtMs: typeof ttl === 'bigint' ? Number(ttl) * 1_000 : acquiredAtMs,
      context: contextFromWire(context),
    });
  }
  const dn = next[denialAttributes.batch];
  if (change.key.pk.startsWith(DENIALS_PREFIX) && typeof dn === 'string') {
    const [startMs, counts, context] = JSON.parse(dn) as DenialBatch;
    facts.push({
      leaseId: `denied.${change.key.pk.slice(DENIALS_PREFIX.length)}`,
      version: 1,
      totals: {},
      acquiredAtMs: startMs,
      expiresAtMs: typeof ttl === 'bigint' ? Number(ttl) * 1_000 : startMs,
      context: contextFromWire(context),
      denied: counts,
    });
  }
  const ev = next[itemAttributes.usageEvent];
  if (typeof ev === 'string' && ev !== change.oldImage?.[itemAttributes.usageEvent]) {
    const [leaseId, version, acquiredAtMs, expiresAtMs, usage, context] = JSON.parse(
      ev,
    ) as UsageEvent;
    const cancelled = version === CANCELLED;
    facts.push({
      leaseId,
      version: cancelled ? Number.MAX_SAFE_INTEGER : version,
      totals: cancelled ? {} : usage,
      acquiredAtMs,
      expiresAtMs,
      context: contextFromWire(context),
    });
  }
  return facts;
}
