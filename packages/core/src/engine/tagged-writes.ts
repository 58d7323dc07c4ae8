/**
 * Writes that consume or give back are tagged with an id of their own, and each item lists its
 * last four (`lw`…`lw3`): after a write whose answer was lost (a dropped connection, a server
 * error), the item says whether it was applied, or that it cannot tell.
 */

import { randomBytes } from 'node:crypto';
import { SluiceError, StoreUnavailableError, WriteOutcomeUnknownError } from '../errors.js';
import { own } from '../names.js';
import { itemAttributes } from '../store/schema.js';
import type {
  ItemKey,
  ItemState,
  ItemUpdate,
  TransactResult,
  UpdateResult,
} from '../store/types.js';
import { type EngineState, sleep } from './state.js';

export const [LAST, ...EARLIER] = itemAttributes.lastWrites;

/**
 * Sends a consuming write or a give-back tagged with a fresh id: it becomes the item's last
 * write, and the ones before it move down the item's short list of last writes. An error that
 * leaves its outcome unknown (the answer lost, a server error) becomes
 * {@link WriteOutcomeUnknownError}, naming the id: see {@link outcomeOf}.
 */
export async function tagged(engine: EngineState, update: ItemUpdate): Promise<UpdateResult> {
  const { writeId, write } = withTag(update);
  return engine.store.update(write).catch((error: unknown) => unknownUnlessRefused(error, writeId));
}

/**
 * {@link tagged} for a write that must land with others or not at all (a give-back with what it
 * spills onto other shards): one transaction, `update` tagged, so that its item still says
 * whether the whole was applied.
 */
export async function taggedWith(
  engine: EngineState,
  update: ItemUpdate,
  others: readonly ItemUpdate[],
): Promise<TransactResult> {
  const { writeId, write } = withTag(update);
  return engine.store
    .transact([write, ...others])
    .catch((error: unknown) => unknownUnlessRefused(error, writeId));
}

/** `update` tagged with a fresh id, which becomes the first of the item's list of last writes. */
function withTag(update: ItemUpdate): { writeId: string; write: ItemUpdate } {
  const writeId = randomBytes(9).toString('base64url');
  const list = itemAttributes.lastWrites;
  // Each right-hand side reads the item as it was: lw3 ← lw2, lw2 ← lw1, lw1 ← lw, lw ← this.
  const shift = EARLIER.map((attr, i) => ({ attr, copyOf: list[i] as string, orElse: '' }));
  return {
    writeId,
    write: { ...update, set: [...update.set, ...shift.reverse(), { attr: LAST, value: writeId }] },
  };
}

/**
 * A tagged write's error: known not to have applied when the store refused it (throttling) or
 * rejected it as malformed (Sluice's own bug); anything else may have followed the write.
 */
function unknownUnlessRefused(error: unknown, writeId: string): never {
  const refused =
    error instanceof StoreUnavailableError ? error.notApplied : error instanceof SluiceError;
  if (refused) throw error;
  throw new WriteOutcomeUnknownError(writeId, { cause: error });
}

/** What an item says of a write whose answer was lost. */
export type Outcome = 'applied' | 'not applied' | 'unknown';

/**
 * What the item says of a write whose answer was lost, from its list of last writes (newest
 * first): `applied` when the write is in it; `not applied` when it is not, and the list reaches
 * back to `before` (the item's last write when this one was planned) or to the item's first
 * tagged write: every write since is listed, and ids are never reused; `unknown` when more writes
 * followed than the list holds. Read again while the store is unreachable, for as long as a lease lives.
 */
export async function outcomeOf(
  engine: EngineState,
  key: ItemKey,
  writeId: string,
  before: string | undefined,
): Promise<Outcome> {
  const until = Date.now() + engine.tuning.leaseTtlMs; // while the lease could have lived
  for (let attempt = 0; ; attempt++) {
    try {
      const item = await engine.store.get(key);
      const listed = itemAttributes.lastWrites.map((attr) => own(item, attr) || undefined);
      if (listed.includes(writeId)) return 'applied';
      const reachesBack =
        listed.includes(undefined) || (before !== undefined && listed.includes(before));
      return reachesBack ? 'not applied' : 'unknown';
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || Date.now() >= until) throw error;
      await sleep(Math.min(5_000, Math.random() * 20 * 2 ** attempt));
    }
  }
}

/** An item's last write as `state` records it. */
export const lastWriteOf = (state: ItemState | undefined): string | undefined => {
  const id = own(state, LAST);
  return typeof id === 'string' && id !== '' ? id : undefined;
};
