/**
 * Writes to scope items: turning per-limit steps into one conditional update (with its TTL),
 * sending a write tagged with its id, moving an item between two lease totals (debt and bounded
 * refunds), and giving back what a refused or failed acquire took.
 */
import { randomBytes } from 'node:crypto';
import { SluiceError, StoreUnavailableError, WriteOutcomeUnknownError } from '../errors.js';
import { own } from '../names.js';
import { itemAttributes, shardOf, TABLE_SCHEMA } from '../store/schema.js';
import type {
  Assignment,
  Condition,
  ItemCheck,
  ItemKey,
  ItemState,
  ItemUpdate,
  UpdateResult,
} from '../store/types.js';
import { bucketDebt, bucketRefund, ceilDiv, type Step } from './gcra.js';
import type { LeasedItem, LeasedLimit } from './lease.js';
import { amountOf, type Usage } from './limits.js';
import { quotaDebt, quotaRefund, quotaStatus } from './quota.js';
import { shardCondition, shardsAt, shareOf, thawed } from './shards.js';
import { type Engine, sleep, toNs } from './state.js';
import type { ScopeCheck } from './types.js';

/** TTLs are rounded up to the hour, so writers of one item rarely disagree on it. */
const TTL_GRAIN_SECONDS = 3_600n;

/** How long a give-back keeps trying while the store refuses it (throttling, unreachable). */
const GIVE_BACK_RETRY_MS = 60_000;

/** An item's generation (0 until its first reset). */
export function generationOf(state: ItemState): number {
  const g = state[itemAttributes.generation];
  return typeof g === 'bigint' ? Number(g) : 0;
}

/** The condition that an item is still in `generation`. */
function generationIs(generation: number): Condition {
  const attr = itemAttributes.generation;
  return generation === 0
    ? { or: [{ absent: attr }, { attr, op: '=', value: 0n }] }
    : { attr, op: '=', value: BigInt(generation) };
}

/**
 * What a lease remembers of a check: its limits (each quota with the window it was charged in)
 * and the item's generation.
 */
export function leasedItem(check: ScopeCheck, state: ItemState, nowMs: number): LeasedItem {
  return {
    key: check.key,
    scope: check.scope,
    generation: generationOf(state),
    limits: check.limits.map(
      (limit): LeasedLimit =>
        limit.kind === 'bucket'
          ? limit
          : { ...limit, windowStartMs: quotaStatus(limit, state, nowMs).windowStartMs },
    ),
  };
}

/**
 * One update from the per-limit steps of an item (skips contribute nothing here; the
 * conditions some of them rest on are added by {@link deltaUpdate}, the only writer whose skips
 * are decided from memory). When a step can
 * raise the item's state, the TTL is set past its horizon plus the slack, rounded up to the
 * hour, never below the TTL last seen, and only if the stored one is not later still: a TTL
 * never shrinks, so no write forgets what another one recorded (a debt, a window).
 */
export function combine(
  engine: Engine,
  key: ItemKey,
  steps: readonly Step[],
  state: ItemState | undefined,
  nowMs: number,
  extra?: Condition,
  shards = 1,
): ItemUpdate | null {
  const set: Assignment[] = [];
  const conditions: Condition[] = [];
  let horizonNs: bigint | undefined;
  for (const step of steps) {
    if (step.kind !== 'write') continue;
    set.push(...step.set);
    if (step.condition) conditions.push(step.condition);
    if (step.horizonNs !== undefined && (horizonNs === undefined || step.horizonNs > horizonNs))
      horizonNs = step.horizonNs;
  }
  if (set.length === 0) return null;
  // A shard never expires (see shards.ts): its scope's other shards count on it.
  if (horizonNs !== undefined && shards === 1) {
    const ttlAttr = TABLE_SCHEMA.ttlAttribute;
    const untilS = ceilDiv(toNs(nowMs) + horizonNs, 1_000_000_000n);
    let ttl = ceilDiv(untilS + BigInt(engine.tuning.ttlSlackSeconds), TTL_GRAIN_SECONDS);
    ttl *= TTL_GRAIN_SECONDS;
    const seenTtl = state?.[ttlAttr];
    if (typeof seenTtl === 'bigint' && seenTtl > ttl) ttl = seenTtl;
    set.push({ attr: ttlAttr, value: ttl });
    conditions.push({ or: [{ absent: ttlAttr }, { attr: ttlAttr, op: '<=', value: ttl }] });
  }
  if (extra) conditions.push(extra);
  const [only] = conditions;
  if (conditions.length === 0 || !only) return { key, set };
  return { key, set, condition: conditions.length === 1 ? only : { and: conditions } };
}

/**
 * The write that moves one item from `previous` to `next` totals, or null if none moves.
 * Debt is always charged; a refund only of what the lease still holds there (see
 * {@link bucketRefund}), and only into the generation the lease was charged in.
 *
 * It is computed from the remembered state of the item, which may be older than the item. A
 * refund that memory says has nowhere to go (no bucket, another window) is skipped only on the
 * condition that the item still says so: a check when nothing else is written. A generation
 * remembered newer than the lease's proves a reset (generations only grow); an older one
 * proves nothing, and the refund goes out conditioned on the lease's generation.
 */
export function deltaUpdate(
  engine: Engine,
  item: LeasedItem,
  previous: Usage,
  next: Usage,
  nowMs: number,
  acquiredAtMs: number,
): ItemUpdate | ItemCheck | null {
  const state = engine.stateOf(item.key);
  const nowNs = toNs(nowMs);
  const elapsedNs = nowNs - toNs(acquiredAtMs);
  const resetSince = state !== undefined && generationOf(state) > item.generation;
  // A shard is charged at the share it holds now (a split since the acquire halves it).
  const { index } = shardOf(item.key);
  const shards = shardsAt(engine, item.key);
  let refunds = false;
  const steps: Step[] = shareOf(item.limits, index, shards).map((limit) => {
    const held = BigInt(amountOf(previous, limit.metric));
    const delta = BigInt(amountOf(next, limit.metric)) - held;
    if (delta === 0n) return { kind: 'skip' };
    if (delta > 0n) {
      return limit.kind === 'bucket'
        ? bucketDebt(limit, state, nowNs, delta)
        : quotaDebt(limit, state, nowMs, delta);
    }
    if (resetSince) return { kind: 'skip' };
    const step =
      limit.kind === 'bucket'
        ? bucketRefund(limit, state, -delta, { amount: held, elapsedNs })
        : quotaRefund(limit, state, nowMs, -delta);
    if (step.kind === 'write') refunds = true;
    return step;
  });
  const onShard = shardCondition(shards);
  const update = combine(
    engine,
    item.key,
    steps,
    state,
    nowMs,
    refunds ? { and: [generationIs(item.generation), onShard] } : onShard,
    shards,
  );
  const assumed = steps.flatMap((step) =>
    step.kind === 'skip' && step.assuming ? [step.assuming] : [],
  );
  const [one] = assumed;
  if (!one) return update;
  const holds: Condition = assumed.length === 1 ? one : { and: assumed };
  if (!update) return { key: item.key, check: holds };
  return { ...update, condition: update.condition ? { and: [update.condition, holds] } : holds };
}

const [LAST, ...EARLIER] = itemAttributes.lastWrites;

/**
 * Sends a consuming write or a give-back tagged with a fresh id: it becomes the item's last
 * write, and the ones before it move down the item's short list of last writes. An error that
 * leaves its outcome unknown (the answer lost, a server error) becomes
 * {@link WriteOutcomeUnknownError}, naming the id: see {@link outcomeOf}.
 */
export async function tagged(engine: Engine, update: ItemUpdate): Promise<UpdateResult> {
  const writeId = randomBytes(9).toString('base64url');
  const list = itemAttributes.lastWrites;
  // Each right-hand side reads the item as it was: lw3 ← lw2, lw2 ← lw1, lw1 ← lw, lw ← this.
  const shift = EARLIER.map((attr, i) => ({ attr, copyOf: list[i] as string, orElse: '' }));
  const set = [...update.set, ...shift.reverse(), { attr: LAST, value: writeId }];
  try {
    return await engine.store.update({ ...update, set });
  } catch (error) {
    // Known not to have applied: a refusal by the store (throttling), or a request it rejected
    // as malformed (Sluice's own bug). Anything else may have followed the write.
    const refused =
      error instanceof StoreUnavailableError ? error.notApplied : error instanceof SluiceError;
    if (refused) throw error;
    throw new WriteOutcomeUnknownError(writeId, { cause: error });
  }
}

/** What an item says of a write whose answer was lost. */
export type Outcome = 'applied' | 'not applied' | 'unknown';

/**
 * What the item says of a write whose answer was lost, from its list of last writes (newest
 * first): `applied` when the write is in it; `not applied` when it is not, and the list reaches
 * back to `before` (the item's last write when this one was planned) or to the item's first
 * tagged write: every write since is listed, and ids are never reused; `unknown` when more writes
 * followed than the list holds. Read again while the store is unreachable, for up to a minute.
 */
export async function outcomeOf(
  engine: Engine,
  key: ItemKey,
  writeId: string,
  before: string | undefined,
): Promise<Outcome> {
  const until = Date.now() + GIVE_BACK_RETRY_MS;
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

/**
 * Applies deltas outside a lease (compensation), retrying on stale state; `also` is written with
 * them (when nothing moves, on its own, under the same conditions).
 */
async function applyDeltas(
  engine: Engine,
  item: LeasedItem,
  previous: Usage,
  next: Usage,
  acquiredAtMs: number,
  also: readonly Assignment[],
  since?: Condition,
): Promise<void> {
  for (let attempt = 0; attempt < engine.tuning.maxAttempts; attempt++) {
    const delta = deltaUpdate(engine, item, previous, next, engine.clock(), acquiredAtMs);
    const planned: ItemUpdate | ItemCheck | null =
      also.length === 0
        ? delta
        : !delta
          ? { key: item.key, set: also }
          : 'check' in delta
            ? { key: item.key, set: also, condition: delta.check }
            : { ...delta, set: [...delta.set, ...also] };
    if (!planned) return;
    const write = since ? withCondition(planned, since) : planned;
    if ('check' in write) {
      // Nothing to give back, if the item still is as remembered.
      const checked = await engine.store.transact([write]);
      if (checked.ok) return;
      const [failure] = checked.failures;
      if (failure?.reason === 'condition') engine.remember(item.key, failure.item ?? {});
      continue;
    }
    const result = await tagged(engine, write);
    engine.remember(item.key, result.item ?? {});
    if (result.ok) return;
    await thawed(engine, item.key, result.item ?? {});
  }
  throw new CompensationContendedError();
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
 * nothing (throttling, an unreachable store), with backoff for up to a minute, or after an answer
 * lost when the item shows nothing written since the charge (its last write is still
 * `chargedBy`): that resend carries the same condition, so at most one of the two can apply
 * unless another writer's write lands between them while the first is still held in the store.
 * When the item cannot tell, the scope stays charged (never given back twice) and it is reported.
 */
export async function giveBack(
  engine: Engine,
  item: LeasedItem,
  usage: Usage,
  acquiredAtMs: number,
  also: readonly Assignment[] = [],
  chargedBy?: string,
): Promise<boolean> {
  const until = Date.now() + GIVE_BACK_RETRY_MS;
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
 * cancellation: the call was never admitted, whatever stays charged): idempotent, so sent again
 * after any failure for up to a minute; never creates the item.
 */
export async function writeAlone(
  engine: Engine,
  key: ItemKey,
  set: readonly Assignment[],
): Promise<void> {
  const until = Date.now() + GIVE_BACK_RETRY_MS;
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
  engine: Engine,
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

/** Every metric of `usage` at zero. */
export function zeroed(usage: Usage): Usage {
  return Object.fromEntries(Object.keys(usage).map((metric) => [metric, 0]));
}

/** What a successful update did to an item, applied to a remembered copy. */
export function applyLocally(state: ItemState, set: readonly Assignment[]): ItemState {
  const next = new Map(Object.entries(state));
  for (const a of set) {
    if ('value' in a) next.set(a.attr, a.value);
    else if ('ifAbsent' in a) next.set(a.attr, next.get(a.attr) ?? a.ifAbsent);
    else if ('copyOf' in a)
      next.set(a.attr, own(state, a.copyOf) ?? a.orElse); // as it was
    else {
      const current = next.get(a.attr);
      const base = typeof current === 'bigint' ? current : 'base' in a ? a.base : 0n;
      next.set(a.attr, base + ('add' in a ? a.add : a.addToExisting));
    }
  }
  return Object.fromEntries(next);
}
