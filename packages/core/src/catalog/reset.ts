/**
 * An entity's reset (a top-up): every bucket of it emptied into its next generation, whatever
 * splits of its sharded scopes are under way.
 */

import { generationIs, generationOf } from '../engine/shards.js';
import { itemAttributes, itemKeys, TABLE_SCHEMA } from '../store/schema.js';
import type { AdminStore, ItemKey, ItemState } from '../store/types.js';

/** Reads of an entity by one reset: a split makes one new shard per item and round, 64 at most. */
const RESET_ROUNDS = 8;
/**
 * What a reset keeps of an item: its key and TTL, its generation (raised), and its shards: a
 * reset empties every shard, the scope keeps its shards, and a split under way what it needs (it
 * starts again from the emptied item: growth.ts).
 */
const KEPT_BY_RESET = new Set<string>([
  TABLE_SCHEMA.partitionKey,
  TABLE_SCHEMA.sortKey,
  TABLE_SCHEMA.ttlAttribute,
  itemAttributes.generation,
  itemAttributes.shards,
  itemAttributes.frozenAt,
  itemAttributes.bornFrozen,
]);

/**
 * Empties every item of `entity`'s partition into the generation after the one it was read in,
 * and names their sort keys. Each item is emptied once, only if still in that generation (one
 * emptied meanwhile, by a split that started again after an earlier write of this reset, is not
 * emptied twice); the partition is read again until no item is new, so a shard a split made from
 * the state before the reset is emptied too (a split makes none from it once its item is
 * emptied: growth.ts).
 */
export async function clearEntity(store: AdminStore, entity: string): Promise<string[]> {
  const pk = itemKeys.entityBucket(entity, '').pk;
  const cleared = new Set<string>();
  for (let round = 0; round < RESET_ROUNDS; round++) {
    const fresh = (await itemsOf(store, pk)).filter(({ key }) => !cleared.has(key.sk));
    if (fresh.length === 0) break;
    await Promise.all(fresh.map((item) => clear(store, item)));
    for (const { key } of fresh) cleared.add(key.sk);
  }
  return [...cleared];
}

/** Every item of a partition. */
async function itemsOf(
  store: AdminStore,
  pk: string,
): Promise<{ key: ItemKey; state: ItemState }[]> {
  const items: { key: ItemKey; state: ItemState }[] = [];
  let after: string | undefined;
  do {
    const page = await store.query(pk, { limit: 100, ...(after !== undefined ? { after } : {}) });
    items.push(...page.items);
    after = page.next;
  } while (after !== undefined);
  return items;
}

/** Empties one item into the generation after `state`'s, if it is still in it; never creates. */
async function clear(store: AdminStore, { key, state }: { key: ItemKey; state: ItemState }) {
  const generation = generationOf(state);
  await store.update({
    key,
    set: [{ attr: itemAttributes.generation, value: BigInt(generation + 1) }],
    remove: Object.keys(state).filter((attr) => !KEPT_BY_RESET.has(attr)),
    condition: {
      and: [{ attr: TABLE_SCHEMA.partitionKey, op: '=', value: key.pk }, generationIs(generation)],
    },
  });
}
