/**
 * What planning one limit of one item comes to, a {@link Step}: write (with the condition that
 * keeps it correct), skip, or deny. The planners of both kinds of limit return it, GCRA buckets
 * (gcra.ts) and calendar quotas (quota.ts); items.ts turns the steps of an item's limits into one
 * conditional update.
 */

import type { Assignment, Condition } from '../store/types.js';

/** What to do about one limit of one item. */
export type Step =
  | {
      readonly kind: 'write';
      readonly set: readonly Assignment[];
      readonly condition?: Condition;
      /**
       * How long after now the state this write leaves can matter, at most (its condition bounds
       * it): the item must outlive it. Absent for a write that only gives back.
       */
      readonly horizonNs?: bigint;
      /**
       * Set when the write converts the item to another definition: it matches the item exactly,
       * so every increment that lands first makes it fail (see `bucketConsume` in gcra.ts).
       */
      readonly converts?: true;
    }
  | {
      readonly kind: 'skip';
      /**
       * A skip decided from a remembered state holds only while the item still is as remembered
       * (a memory can be older than the item): the write that carries it checks this.
       */
      readonly assuming?: Condition;
    }
  | { readonly kind: 'deny'; readonly retryAfterNs: bigint };
