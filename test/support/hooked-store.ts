/**
 * The real store with hooks around each single-item update and before each transaction: to throw
 * there (a throttled write, an answer lost after the write was applied), to stall (a paused
 * DynamoDB), or to act meanwhile (another caller, the clock). Fault injection only: every call
 * that is not refused goes through to the real DynamoDB Local.
 */
import type { ItemKey, Store } from '@sluice/core';
import type {
  ItemCheck,
  ItemState,
  ItemUpdate,
  TransactResult,
  UpdateResult,
} from '@sluice/core/internal';

export class HookedStore implements Store {
  constructor(
    readonly inner: Store,
    readonly before: (update: ItemUpdate) => Promise<void> = async () => {},
    /** After an update reached the table: to lose its answer (throw), or to act meanwhile. */
    readonly after: (update: ItemUpdate, result: UpdateResult) => Promise<void> = async () => {},
    /** Before a transaction: to stall it, or to throw. */
    readonly beforeTransact: (
      updates: readonly (ItemUpdate | ItemCheck)[],
    ) => Promise<void> = async () => {},
  ) {}
  async update(update: ItemUpdate): Promise<UpdateResult> {
    await this.before(update);
    const result = await this.inner.update(update);
    await this.after(update, result);
    return result;
  }
  async transact(updates: readonly (ItemUpdate | ItemCheck)[]): Promise<TransactResult> {
    await this.beforeTransact(updates);
    return this.inner.transact(updates);
  }
  get(key: ItemKey): Promise<ItemState | undefined> {
    return this.inner.get(key);
  }
}

/**
 * A point where a store call is held: the call `arrive`s (and waits there until `release`), and
 * the test learns it through `reached`.
 */
export function holdPoint() {
  let arrived = () => {};
  const reached = new Promise<void>((done) => {
    arrived = done;
  });
  let release = () => {};
  const released = new Promise<void>((go) => {
    release = go;
  });
  return {
    reached,
    release,
    arrive: async () => {
      arrived();
      await released;
    },
  };
}
