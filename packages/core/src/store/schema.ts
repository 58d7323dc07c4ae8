/**
 * The table schema, defined once: the CDK stack and the local server read it from here.
 */
import type { ItemKey } from './types.js';

/** Key and TTL attribute names of the Sluice table. */
export const TABLE_SCHEMA = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Epoch seconds after which DynamoDB may delete the item (idle buckets, old leases). */
  ttlAttribute: 'ttl',
  /** The table's stream carries both images: the usage aggregator compares them. */
  streamView: 'NEW_AND_OLD_IMAGES',
} as const;

/** Attribute names inside a bucket item, per limit name. */
export const bucketAttributes = {
  /** GCRA theoretical arrival time, in units of 1/scale ns (see gcra.ts). */
  tat: (limitName: string) => `b_${limitName}`,
  /** The definition the TAT is scaled by: `limit/periodSeconds/burst`. */
  scale: (limitName: string) => `s_${limitName}`,
  /** When that definition was stored (epoch ms): a newer one wins, an older one adopts it. */
  revision: (limitName: string) => `r_${limitName}`,
  /**
   * Until when (epoch ms) processes holding an older stored definition adopt this one: the time
   * every process takes to read a configuration change, from the write that converted the item.
   */
  adoptUntil: (limitName: string) => `c_${limitName}`,
  /** Calendar quota: start (epoch ms) of the window `used` counts in. */
  window: (limitName: string) => `w_${limitName}`,
  /** Calendar quota: amount used in that window. */
  used: (limitName: string) => `u_${limitName}`,
  /** Calendar quota with budget alerts: `limit|threshold,threshold…`, for the usage aggregator. */
  alerts: (limitName: string) => `a_${limitName}`,
} as const;

/** Attributes of a whole scope item, beside its limits'. */
export const itemAttributes = {
  /**
   * Generation: bumped by every reset. A lease remembers the generation it was charged in and
   * never refunds into another one.
   */
  generation: 'g',
  /** The usage event of the last acquire that wrote this item first (see usage-context.ts). */
  usageEvent: 'ev',
  /** Shards the item's scope is split into where it stands (absent: 1); negative while splitting. */
  shards: 'n',
  /** When a split froze the item (epoch ms). */
  frozenAt: 'nf',
  /** On a shard a split created, until its parent has thawed (see shards.ts). */
  bornFrozen: 'nb',
  /** Consuming writes to an item of a scope that may grow more shards (how hot it runs). */
  writes: 'wc',
  /**
   * The ids of the last writes that consumed or gave back, newest first ('' where none): after a
   * write whose answer was lost, the item says whether it was applied, as long as fewer writes
   * than these followed it (see items.ts).
   */
  lastWrites: ['lw', 'lw1', 'lw2', 'lw3'],
} as const;

/** Attributes of a lease's settlement record (the item {@link itemKeys.lease} names). */
export const leaseAttributes = {
  /** The totals charged so far (canonical JSON usage). */
  totals: 't',
  /** What adjusts and the release have reported (canonical JSON usage). */
  reported: 'r',
  /** Version: each settlement writes the next one, conditional on the one it read. */
  version: 'n',
  /** 1 once a release has settled the lease. */
  settled: 'st',
  /** What the settling release asked (its kind and totals): an equal retry is answered, not refused. */
  fingerprint: 'f',
  /**
   * Whom its usage counts for, and the acquire's estimate: `[acquired at, context, estimate]`
   * (see usage-context.ts).
   */
  context: 'c',
  /**
   * Debt charged into a calendar window after the lease's own, which later refunds take back
   * first (canonical JSON: `item index/limit name` → `[window start ms, amount]`).
   */
  later: 'dl',
} as const;

/**
 * Attributes of usage history rows (which also keep the aggregator's marks: see usage/marks.ts).
 */
export const usageAttributes = {
  /** A metric's total. */
  metric: (metric: string) => `m_${metric}`,
  /** Refusals by limit name. */
  denied: (limitName: string) => `d_${limitName}`,
  /** Leases counted (a lease given back unused counts none). */
  leases: 'leases',
  /** All refusals (the top-entities rows). */
  deniedTotal: 'denied',
  /** Start and end of the row's period, epoch ms. */
  periodStart: 'ps',
  periodEnd: 'pe',
  /** Of an hour row: the entity's local day and month it falls in, start and end, epoch ms. */
  dayStart: 'ds',
  dayEnd: 'de',
  monthStart: 'mo',
  monthEnd: 'me',
  /** The entity of a top-entities row. */
  entity: 'e',
  /** Of an event log item: the events and cancellations a batch counted (see usage/event-log.ts). */
  entries: 'log',
} as const;

/** Attributes of a process's gathering of refusals (the item {@link itemKeys.denials} names). */
export const denialAttributes = {
  /** The gathering: `[start, counts by limit name, context]` (see usage/denials.ts). */
  batch: 'dn',
} as const;

/**
 * Attributes of the usage aggregator's progress (the item {@link usageKeys.progress} names): one
 * small item, written at most once per batch, which the health check reads.
 */
export const progressAttributes = {
  /** When the aggregator last finished counting: a batch, or found nothing left (epoch ms). */
  countedAt: 'ca',
  /** How far behind it was then: how old the oldest record it counted was, at least (ms). */
  lagMs: 'lag',
  /** Since when counting has been failing (epoch ms); absent once an attempt succeeds. */
  failingSince: 'fs',
  /** The last failure's error name (never its message), while failing. */
  error: 'err',
} as const;

/** Attributes of a budget alert. */
export const alertAttributes = {
  /** The event (JSON). */
  detail: 'detail',
  /** When it was first recorded (ISO 8601). */
  at: 'at',
  /** When a sender took it on (epoch ms); cleared when sending failed. */
  claimed: 'claimed',
  /**
   * Which sender took it on (an aggregator's id): one whose claim's answer was lost finds its
   * own claim when its batch comes back, and sends.
   */
  claimedBy: 'claimedBy',
  /** When it was delivered (ISO 8601). */
  sent: 'sent',
  /** The level of `used` it fired at: ceil(threshold × the limit then in force). */
  level: 'level',
  /** On a threshold's first alert in a window: the highest level it has fired at there since. */
  highest: 'top',
} as const;

/**
 * Granularities of usage history, by the letter that started their rows' sort keys when the
 * aggregator wrote a row per granularity (such rows are still read).
 */
export const USAGE_GRANULARITY = { hour: 'h', day: 'd', month: 'm' } as const;
/** The letter that starts an hour row's sort key (see {@link usageKeys.usageHour}). */
export const USAGE_HOUR = 'u';
export type UsageGranularity = keyof typeof USAGE_GRANULARITY;

/** Partitions the top-entities rows of one period are spread over (so no one partition is hot). */
export const TOP_SHARDS = 8;

/** Attributes of a stored configuration document and of an audit entry. */
export const documentAttributes = {
  /** The document (JSON). */
  body: 'doc',
  /** When it was last written (ISO 8601). */
  updatedAt: 'at',
  /** Who wrote it last. */
  updatedBy: 'by',
  /** Version: each write stores the next one, conditional on the one it read. */
  version: 'v',
  /** A plan's count of the entities on it. */
  references: 'refs',
  /** An entity's count of the entities whose parent it is. */
  children: 'children',
  /**
   * An entity's count of the entities attached anywhere below it (each write that gives an entity
   * a parent counts one on every ancestor): a move of the entity holds only while it is as read,
   * so the depth below it that the move judged is still the depth below it.
   */
  attached: 'attached',
} as const;

/** Attributes of the signing key item: the current key's id, and each key by id. */
export const signingKeyAttributes = {
  /** Id of the key that signs new leases. */
  current: 'cur',
  /** A key's secret (base64). */
  secret: (keyId: string) => `k_${keyId}`,
  /** Until when (epoch ms) a key rotated out still verifies. */
  retiresAt: (keyId: string) => `e_${keyId}`,
} as const;

/** Shard `index` of the scope whose own item is `base` (shard 0 is `base` itself). */
export function shardKey(base: ItemKey, index: number): ItemKey {
  return index === 0 ? base : { pk: base.pk, sk: `${base.sk}#${index}` };
}

/** The scope item and shard index of any shard's key (identifiers never hold `#`). */
export function shardOf(key: ItemKey): { readonly base: ItemKey; readonly index: number } {
  const at = key.sk.lastIndexOf('#');
  if (at < 0) return { base: key, index: 0 };
  return { base: { pk: key.pk, sk: key.sk.slice(0, at) }, index: Number(key.sk.slice(at + 1)) };
}

/** Item keys. All items share one table; the prefixes keep them apart. */
export const itemKeys = {
  /** Buckets of an entity (a key, a project, an org) for one resource. */
  entityBucket: (entity: string, resource: string): ItemKey => ({
    pk: `entity#${entity}`,
    sk: resource,
  }),
  /** Buckets of an entity shared by all its resources (limits with no resource pattern). */
  entityWide: (entity: string): ItemKey => ({ pk: `entity#${entity}`, sk: '*' }),
  /** Limits shared by every caller of a resource (e.g. the provider's own TPM). */
  resourceBucket: (resource: string): ItemKey => ({ pk: `resource#${resource}`, sk: '*' }),
  /** Settlement record of a lease. */
  lease: (leaseId: string): ItemKey => ({ pk: `lease#${leaseId}`, sk: 'lease' }),
  /** What the health check reads: proves the table answers, touches nothing else. */
  health: (): ItemKey => ({ pk: 'meta#health', sk: 'v1' }),
  /** A stored configuration document (plan, entity, resource, settings) by name. */
  config: (kind: string, name: string): ItemKey => ({ pk: `config#${kind}`, sk: name }),
  /** An audit entry; the sort key starts with the ISO time, so a partition query is in order. */
  audit: (id: string): ItemKey => ({ pk: 'audit', sk: id }),
  /** A process's gathering of refusals, written once for the usage aggregator to count. */
  denials: (id: string): ItemKey => ({ pk: `denied#${id}`, sk: 'd' }),
  /** The shared keys leases are signed with (see signing-keys.ts). */
  leaseSigningKey: (): ItemKey => ({ pk: 'meta#lease-signing-key', sk: 'v1' }),
} as const;

/** Item keys of usage history and budget alerts (apart, so the hot path's bundles leave them out). */
export const usageKeys = {
  /**
   * Usage of an entity for one resource in one hour of its local day (`start`: ISO 8601 UTC):
   * the rows the aggregator writes; days and months are summed from them.
   */
  usageHour: (entity: string, start: string, resource: string) => ({
    pk: `usage#${entity}`,
    sk: `${USAGE_HOUR}#${start}#${resource}`,
  }),
  /**
   * Usage of an entity for one resource in one period, as aggregators before hour rows wrote it
   * (`period` is the start, ISO 8601 UTC): still read, never written.
   */
  usage: (entity: string, granularity: UsageGranularity, period: string, resource: string) => ({
    pk: `usage#${entity}`,
    sk: `${USAGE_GRANULARITY[granularity]}#${period}#${resource}`,
  }),
  /** An entity's totals in one day or month (`date`: its local YYYY-MM-DD or YYYY-MM). */
  usageTop: (granularity: 'day' | 'month', date: string, shard: number, entity: string) => ({
    pk: `usagetop#${USAGE_GRANULARITY[granularity]}#${date}#${shard}`,
    sk: entity,
  }),
  /**
   * One batch's log of the usage events and cancellations it counted, of leases acquired in the
   * minute `atMs` falls in (`id`: random, so no log item is ever written twice).
   */
  eventLog: (atMs: number, id: string): ItemKey => ({
    pk: `usagelog#${new Date(Math.floor(atMs / 60_000) * 60_000).toISOString().slice(0, 16)}`,
    sk: id,
  }),
  /** How far the usage aggregator has counted, and whether it is failing (one item). */
  progress: (): ItemKey => ({ pk: 'meta#usage-progress', sk: 'v1' }),
  /**
   * A budget alert: one per item, limit, window, threshold and level. A threshold's first alert
   * in a window is keyed without its level; one fired later (at a raised budget) adds it.
   */
  alert: (
    window: string,
    item: ItemKey,
    limitName: string,
    threshold: number,
    level?: bigint,
  ): ItemKey => ({
    pk: 'alert',
    sk: `${window}#${item.pk}#${item.sk}#${limitName}#${threshold}${level === undefined ? '' : `#${level}`}`,
  }),
} as const;
