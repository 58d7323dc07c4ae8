/**
 * The real store with a hook before each single-item update: to throw there (a throttled write)
 * or to act meanwhile (another caller, the clock). Fault injection only: every call that is not
 * refused goes through to the real DynamoDB Local.
 */
import type {
  ItemCheck,
  ItemKey,
  ItemState,
  ItemUpdate,
  Store,
  TransactResult,
  UpdateResult,
} from '@sluice/core';

export class HookedStore implements Store {
  constructor(
    readonly inner: Store,
    readonly before: (update: ItemUpdate) => Promise<void> = async () => {},
  ) {}
  async update(update: ItemUpdate): Promise<UpdateResult> {
    await this.before(update);
    return this.inner.update(update);
  }
  transact(updates: readonly (ItemUpdate | ItemCheck)[]): Promise<TransactResult> {
    return this.inner.transact(updates);
  }
  get(key: ItemKey): Promise<ItemState | undefined> {
    return this.inner.get(key);
  }
}
