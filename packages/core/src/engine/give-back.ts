/**
 * Giving back what a refused or failed acquire took: exactly once, or not at all. A give-back
 * is not idempotent, so it is sent again only when the store says it applied nothing, and an
 * answer lost is resolved through the item's list of last writes (tagged-writes.ts).
 */

import { StoreUnavailableError, WriteOutcomeUnknownError } from '../errors.js';
import { TABLE_SCHEMA } from '../store/schema.js';
import type { Assignment, Condition, ItemCheck, ItemKey, ItemUpdate } from '../store/types.js';
import { Budget } from './budget.js';
import { thawed } from './growth.js';
import { deltaUpdates, zeroed } from './items.js';
import type { LeasedItem } from './lease.js';
import type { Usage } from './limits.js';
import { learnFailed, rememberCommitted } from './remembered-writes.js';
import { findRoom, TRANSACTION_ITEMS } from './spill.js';
import { type EngineState, sleep } from './state.js';

import { LAST, outcomeOf, tagged, taggedWith } from './tagged-writes.js';

/**
 * Applies deltas outside a lease (compensation), retrying on stale state; `also` is written with
 * them (when nothing moves, on its own, under the same conditions). What a sharded bucket's item
 * no longer holds (a split moved it since the charge) is given back by the scope's other shards,
 * in one transaction with the item's write (see spill.ts).
 */
async function applyDeltas(
  engine: EngineState,
  item: LeasedItem,
  previous: Usage,
  next: Usage,
  acquiredAtMs: number,
  also: readonly Assignment[],
  since?: Condition,
): Promise<void> {
  const budget = new Budget(engine.tuning.maxAttempts);
  let roomFound = false;
  for (;;) {
    const nowMs = engine.clock();
    const planned = deltaUpdates(engine, item, previous, next, nowMs, acquiredAtMs, ROOM);
    const { spills } = planned;
    if (spills.unplaced && !roomFound && budget.waited()) {
      roomFound = await findRoom(engine, [spills.unplaced]);
      continue;
    }
    const write = withAlso(item.key, planned.update, also, spills.updates.length > 0);
    if (!write) return;
    const conditioned = since ? withCondition(write, since) : write;
    if ('check' in conditioned) {
      // Nothing to give back, if the item still is as remembered.
      const checked = await engine.store.transact([conditioned]);
      if (checked.ok) return;
      const [failure] = checked.failures;
      if (failure?.reason === 'condition') engine.remember(item.key, failure.item ?? {});
    } else if (spills.updates.length === 0) {
      const result = await tagged(engine, conditioned);
      engine.remember(item.key, result.item ?? {});
      if (result.ok) return;
      await thawed(engine, item.key, result.item ?? {});
    } else {
      const writes = [conditioned, ...spills.updates];
      const result = await taggedWith(engine, conditioned, spills.updates);
      if (result.ok) return rememberCommitted(engine, writes);
      // Each failed item learnt; splits under way among them completed before the next try.
      await Promise.all(
        writes.map((write, i) => {
          const failure = result.failures[i];
          return failure && learnFailed(engine, write.key, failure);
        }),
      );
    }
    roomFound = false; // a split since may have moved what the rest was to find
    if (!budget.lost()) throw new CompensationContendedError();
  }
}

/** A transaction of the give-back and its spills beside it: at most DynamoDB's bound. */
const ROOM = TRANSACTION_ITEMS - 1;

/**
 * The give-back's write of the item with `also`; an update (never a bare check) when it goes with
 * spills, so that the item's list of last writes tells whether the whole applied.
 */
function withAlso(
  key: ItemKey,
  delta: ItemUpdate | ItemCheck | null,
  also: readonly Assignment[],
  spilled: boolean,
): ItemUpdate | ItemCheck | null {
  if (!delta) return also.length > 0 || spilled ? { key, set: also } : null;
  if ('check' in delta)
    return also.length > 0 || spilled ? { key, set: also, condition: delta.check } : delta;
  return { ...delta, set: [...delta.set, ...also] };
}

/** `write` with one more condition. */
function withCondition(write: ItemUpdate | ItemCheck, more: Condition): ItemUpdate | ItemCheck {
  if ('check' in write) return { ...write, check: { and: [write.check, more] } };
  return { ...write, condition: write.condition ? { and: [write.condition, more] } : more };
}

/** A give-back whose condition kept failing: others kept changing the item. */
class CompensationContendedError extends StoreUnavailableError {
  constructor() {
    super('compensation kept failing its condition', { notApplied: true });
  }
}

/**
 * Gives back what a refused or failed acquire took from one item; `chargedBy` is the write that
 * took it. A give-back is not idempotent: it is sent again only after a refusal that applied
 * nothing (throttling, an unreachable store), with backoff for as long as a lease lives, or after an answer
 * lost when the item shows nothing written since the charge (its last write is still
 * `chargedBy`): that resend carries the same condition, so at most one of the two can apply
 * unless another writer's write lands between them while the first is still held in the store.
 * When the item cannot tell, the scope stays charged (never given back twice) and it is reported.
 */
export async function giveBack(
  engine: EngineState,
  item: LeasedItem,
  usage: Usage,
  acquiredAtMs: number,
  also: readonly Assignment[] = [],
  chargedBy?: string,
): Promise<boolean> {
  const until = Date.now() + engine.tuning.leaseTtlMs; // while the lease could have lived
  let since: Condition | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      await applyDeltas(engine, item, usage, zeroed(usage), acquiredAtMs, also, since);
      return true;
    } catch (error) {
      if (error instanceof WriteOutcomeUnknownError) {
        const outcome = await outcomeOf(engine, item.key, error.writeId, chargedBy);
        if (outcome === 'applied') return true;
        if (outcome === 'unknown' || chargedBy === undefined) {
          engine.onBackgroundError(keptCharged(item, error));
          return false;
        }
        since = { attr: LAST, op: '=', value: chargedBy };
        continue;
      }
      // Refused by the store before anything applied: again, for a while (throttling, an outage).
      // Its condition failing attempt after attempt is contention: a few more tries, then report.
      const refused = error instanceof StoreUnavailableError && error.notApplied;
      const contended = error instanceof CompensationContendedError;
      if (contended && since) {
        engine.onBackgroundError(keptCharged(item, error)); // written since: it cannot tell
        return false;
      }
      if (!refused || Date.now() >= until || (contended && attempt >= 2)) {
        engine.onBackgroundError(error);
        return false;
      }
      await sleep(Math.min(5_000, Math.random() * 20 * 2 ** attempt));
    }
  }
}

/**
 * Writes `set` alone where a give-back that carried it could not be made (a usage event's
 * cancellation: the call was never admitted, whatever stays charged): sent again after any
 * failure, for as long as a lease lives (usage history counts a cancellation once, however often
 * it is written); never creates the item.
 */
export async function writeAlone(
  engine: EngineState,
  key: ItemKey,
  set: readonly Assignment[],
): Promise<void> {
  const until = Date.now() + engine.tuning.leaseTtlMs; // while the lease could have lived
  for (let attempt = 0; ; attempt++) {
    try {
      await engine.store.update({ key, set, condition: { exists: TABLE_SCHEMA.partitionKey } });
      return;
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || Date.now() >= until) throw error;
      await sleep(Math.min(5_000, Math.random() * 20 * 2 ** attempt));
    }
  }
}

/**
 * Gives back what a write whose answer was lost took, once the item says it was applied (see
 * {@link outcomeOf}; `before` is the item's last write when it was planned); when the item cannot
 * tell, the scope stays charged, and it is reported. True once nothing stays for the write.
 */
export async function giveBackIfApplied(
  engine: EngineState,
  item: LeasedItem,
  usage: Usage,
  acquiredAtMs: number,
  written: { readonly writeId: string; readonly before: string | undefined },
  also: readonly Assignment[] = [],
): Promise<boolean> {
  const outcome = await outcomeOf(engine, item.key, written.writeId, written.before);
  if (outcome === 'applied')
    return giveBack(engine, item, usage, acquiredAtMs, also, written.writeId);
  if (outcome === 'not applied') return true; // nothing was taken, nor recorded
  engine.onBackgroundError(keptCharged(item));
  return false;
}

/** The report of a charge that stays because the item cannot tell whether a write applied. */
const keptCharged = (item: LeasedItem, cause?: unknown) =>
  new StoreUnavailableError(
    `a write whose answer was lost may have been applied to ${item.scope} (${item.key.pk}): it stays charged`,
    cause === undefined ? {} : { cause },
  );
