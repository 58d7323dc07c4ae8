/**
 * What a transaction's answer teaches this process's memory of the items it wrote: a committed
 * transaction's updates, applied to the states remembered; a cancelled one's items that failed
 * their condition, as the table holds them, with the splits under way among them completed.
 */

import type { ItemCheck, ItemKey, ItemUpdate, TransactFailure } from '../store/types.js';
import { thawed } from './growth.js';
import { applyLocally } from './items.js';
import { frozenAt } from './shards.js';
import { type EngineState, keyOf } from './state.js';

/**
 * The updates of a committed transaction, applied to the remembered items (checks change none).
 * Each stays as old as the state it was applied to: the transaction's answer does not show the
 * item, which others may have written since that state was seen (their refunds too), so what
 * comes out may refuse from memory no longer than that state could (`cacheDenyMaxAgeMs`).
 */
export function rememberCommitted(
  engine: EngineState,
  writes: readonly (ItemUpdate | ItemCheck)[],
): void {
  for (const write of writes) {
    if (!('set' in write)) continue;
    const seen = engine.seen.get(keyOf(write.key));
    if (seen) engine.remember(write.key, applyLocally(seen.state, write.set), seen.atMs);
  }
}

/**
 * An item's part in a cancelled transaction: when it failed its condition, its state is
 * remembered; when it is frozen for a split, the promise that completes the split (to wait for
 * before writing again).
 */
export function learnFailed(
  engine: EngineState,
  key: ItemKey,
  failure: TransactFailure,
): Promise<void> | undefined {
  if (failure.reason !== 'condition') return undefined;
  engine.remember(key, failure.item ?? {});
  return frozenAt(failure.item) === undefined ? undefined : thawed(engine, key, failure.item ?? {});
}
