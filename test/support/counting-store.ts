/**
 * Wraps the real store and counts what reaches DynamoDB. Instrumentation only: every call goes
 * through to the real DynamoDB Local.
 */
import type { ItemKey, Store } from '@sluice/core';
import type {
  ItemCheck,
  ItemState,
  ItemUpdate,
  TransactResult,
  UpdateResult,
} from '@sluice/core/internal';

export class CountingStore implements Store {
  counts = { update: 0, transact: 0, get: 0 };
  constructor(private readonly inner: Store) {}
  get writes(): number {
    return this.counts.update + this.counts.transact;
  }
  update(update: ItemUpdate): Promise<UpdateResult> {
    this.counts.update++;
    return this.inner.update(update);
  }
  transact(updates: readonly (ItemUpdate | ItemCheck)[]): Promise<TransactResult> {
    this.counts.transact++;
    return this.inner.transact(updates);
  }
  get(key: ItemKey): Promise<ItemState | undefined> {
    this.counts.get++;
    return this.inner.get(key);
  }
}
