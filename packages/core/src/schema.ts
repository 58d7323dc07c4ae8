/**
 * The table schema, defined once: the CDK stack and the local server read it from here.
 */
import type { ItemKey } from './store/types.js';

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
  /** The limit (per period) the TAT is scaled by. */
  scale: (limitName: string) => `s_${limitName}`,
  /** Calendar quota: start (epoch ms) of the window `used` counts in. */
  window: (limitName: string) => `w_${limitName}`,
  /** Calendar quota: amount used in that window. */
  used: (limitName: string) => `u_${limitName}`,
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
  /** The shared key leases are signed with. */
  leaseSigningKey: (): ItemKey => ({ pk: 'meta#lease-signing-key', sk: 'v1' }),
} as const;
