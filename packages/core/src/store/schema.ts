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
} as const;

/** Attribute names inside a bucket item, per limit name. */
export const bucketAttributes = {
  /** GCRA theoretical arrival time, in units of 1/scale ns (see gcra.ts). */
  tat: (limitName: string) => `b_${limitName}`,
  /** The definition the TAT is scaled by: `limit/periodSeconds/burst`. */
  scale: (limitName: string) => `s_${limitName}`,
  /** When that definition was stored (epoch ms): a newer one wins, an older one adopts it. */
  revision: (limitName: string) => `r_${limitName}`,
  /** Calendar quota: start (epoch ms) of the window `used` counts in. */
  window: (limitName: string) => `w_${limitName}`,
  /** Calendar quota: amount used in that window. */
  used: (limitName: string) => `u_${limitName}`,
} as const;

/** Attributes of a whole scope item, beside its limits'. */
export const itemAttributes = {
  /**
   * Generation: bumped by every reset. A lease remembers the generation it was charged in and
   * never refunds into another one.
   */
  generation: 'g',
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
} as const;

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
  /** The shared keys leases are signed with (see signing-keys.ts). */
  leaseSigningKey: (): ItemKey => ({ pk: 'meta#lease-signing-key', sk: 'v1' }),
} as const;
