/**
 * acquire: one conditional UpdateItem per scope item, sent in parallel, no read. The branch
 * (idle/busy, new/same window) is guessed from the last state this process saw; a failed
 * condition hands back the old item, which either proves a denial or fixes the guess. If any
 * item denies, the items that admitted are given back: a denial consumes nothing. A request the
 * last state seen proves cannot fit is denied from memory (no write). In a process serving many
 * calls at once, the engine's combiner sends the writes: concurrent calls on one item share one
 * (combining.ts).
 *
 * Every decision is bounded by the request's deadline (`signal`): past it nothing new is
 * written and the call fails with {@link DeadlineExceededError}. Whatever the call took is given
 * back, also when its write lands after the answer, or when its answer was lost and the item
 * says it was applied (items.ts): the caller never received the lease, so nothing stays charged
 * for it. A refusal is truthful: it names the limits the last state seen says are full, or, when
 * the attempts ran out on contention with room to spare, the call fails as unavailable (503).
 *
 * The steps: the decision (decision.ts), refusals memory proves, each scope's writes
 * (scope-writes.ts), then the admission, or the give-backs and the refusal (here).
 */
import {
  DeadlineExceededError,
  StoreUnavailableError,
  WriteOutcomeUnknownError,
} from '../errors.js';
import { shardKey, TABLE_SCHEMA } from '../store/schema.js';
import type { Assignment, Condition, ItemKey } from '../store/types.js';
import { beforeDeadline } from './budget.js';
import type { Written } from './combining.js';
import {
  budgetDefinitions,
  charged,
  fits,
  limitConsume,
  type Placement,
  priorityAt,
  whole,
} from './consume.js';
import { type Decision, decision, fromMemory, type ScopeOutcome } from './decision.js';
import { bucketWaitNs } from './gcra.js';
import { giveBack, giveBackIfApplied, writeAlone } from './give-back.js';
import { leasedItem } from './items.js';
import { type LeaseClaims, type SigningKey, signLease } from './lease.js';
import { amountOf } from './limits.js';
import { writeScope } from './scope-writes.js';
import { shardCondition, shareOf } from './shards.js';
import { type EngineState, nsToMs, toNs } from './state.js';
import { denial, remembered, scopeStatuses, violation } from './statuses.js';
import { lastWriteOf } from './tagged-writes.js';
import type { AcquireRequest, AcquireResult, ScopeCheck, Violation } from './types.js';
import { CANCELLED } from './usage-context.js';

/**
 * Asks to take `usage` from every limit of every check, atomically per decision.
 *
 * @example
 * const result = await acquire(engine, {
 *   checks: [{ scope: 'entity', key: itemKeys.entityBucket('key-123', 'gpt-4o'), limits }],
 *   usage: { input_tokens: 1_500, output_tokens: 500 },
 * });
 */
export async function acquire(
  engine: EngineState,
  request: AcquireRequest,
): Promise<AcquireResult> {
  const d = decision(engine, request);
  const tooLarge = await neverFits(d, request.signal);
  if (tooLarge) return tooLarge;
  const cursors = fromMemory(d);
  const deniedFromMemory = cursors.flatMap((c, i) =>
    c.step.kind === 'deny'
      ? whole(engine, d.checks[i] as ScopeCheck, c.step.violations, d.nowMs)
      : [],
  );
  if (deniedFromMemory.length > 0) {
    recordBudgets(
      d,
      cursors.flatMap((c, i) => (c.step.kind === 'deny' ? [i] : [])),
    );
    const shadow = cursors.flatMap((c) => c.step.shadow);
    return {
      ...denial(engine, d.checks, deniedFromMemory, d.nowMs),
      ...shadowOf(d.checks, shadow),
    };
  }
  // Before any write (a failure here changes nothing), after what is refused without one (the
  // key is created where the table has none, and a request that can never fit writes nothing).
  const signingKey = await beforeDeadline(engine.keys.current(), request.signal);
  const outcomes = await Promise.all(cursors.map((cursor, i) => writeScope(d, i, cursor)));
  // Admitted after the deadline, the lease would reach nobody: given back, and unavailable.
  const admitted = outcomes.every((o) => o.kind === 'ok') && !request.signal?.aborted;
  if (admitted) return admit(d, outcomes, signingKey);
  await compensate(d, outcomes);
  if (request.signal?.aborted && outcomes.every((o) => o.kind !== 'denied'))
    throw new DeadlineExceededError();
  // The writes may have shown a scope sharded that memory did not know: a request larger than a
  // shard's share can never fit, and is a 422 (as the table has it), not a wait.
  if (outcomes.some((o) => o.kind === 'denied')) {
    const never = await neverFits(d, request.signal);
    if (never) return never;
  }
  return refuse(d, outcomes);
}

/**
 * The refusal of a request some limit can never hold (a sharded scope: its largest shard). Every
 * scope is read first, each shard of a sharded one too (once: such a request is rare), so what
 * the answer says (`remaining`, shadow limits that are full) and the budget the refusal records
 * come from the table, not from a memory that may be old or empty.
 */
async function neverFits(d: Decision, signal?: AbortSignal): Promise<AcquireResult | undefined> {
  if (!d.checks.some((check) => tooLarge(d, check, false).length > 0)) return undefined;
  // Unread (DynamoDB slow or down), the refusal stands as memory has it: it needs no state.
  await beforeDeadline(readScopes(d.engine, d.checks), signal).catch(() => undefined);
  return exceedsCapacity(d);
}

/** The 422 of a request some enforced limit can never hold, as memory now has the scopes. */
function exceedsCapacity(d: Decision): AcquireResult | undefined {
  const { engine, checks, nowMs } = d;
  const refused = checks.map((check) => whole(engine, check, tooLarge(d, check, false), nowMs));
  const violations = refused.flat();
  if (violations.length === 0) return undefined;
  recordBudgets(
    d,
    refused.flatMap((v, i) => (v.length > 0 ? [i] : [])),
  );
  // Shadow limits are reported whatever the enforced ones decide: those that could never fit,
  // and those the last state seen says are full.
  const shadow = checks.flatMap((check) => [...tooLarge(d, check, true), ...fullShadow(d, check)]);
  return {
    allowed: false,
    code: 'exceeds_capacity',
    retryAfterMs: null,
    violations,
    limits: remembered(engine, checks, nowMs),
    ...shadowOf(checks, shadow),
  };
}

/** Reads each scope's item, and then each shard of a scope the items say is sharded. */
async function readScopes(engine: EngineState, checks: readonly ScopeCheck[]): Promise<void> {
  await engine.readAgain(checks.map(({ key }) => key));
  await engine.readAgain(
    checks.flatMap(({ key }) =>
      Array.from({ length: engine.shardCount(key) - 1 }, (_, i) => shardKey(key, i + 1)),
    ),
  );
}

/** The limits of a scope (enforced, or shadow) a request can never fit, as violations. */
function tooLarge(d: Decision, check: ScopeCheck, shadow: boolean): Violation[] {
  const { engine, nowMs, usage } = d;
  return shareOf(check.limits, 0, engine.shardCount(check.key)).flatMap((limit, j) =>
    (limit.shadow ?? false) === shadow &&
    !fits(limit, amountOf(usage, limit.metric), priorityAt(check, d.priority))
      ? [violation(check, check.limits[j] ?? limit, engine.stateOf(check.key), nowMs, usage, null)]
      : [],
  );
}

/** The shadow limits of a scope that fit a request but that its last state seen shows full. */
function fullShadow(d: Decision, check: ScopeCheck): Violation[] {
  const state = d.engine.stateOf(check.key);
  if (d.engine.shardCount(check.key) > 1 || state === undefined) return [];
  const options = { priority: priorityAt(check, d.priority), maxWaitNs: 0n, mayDeny: true };
  return check.limits.flatMap((limit) => {
    const amount = amountOf(d.usage, limit.metric);
    if (!limit.shadow || !fits(limit, amount, options.priority)) return [];
    const step = limitConsume(limit, state, d.nowMs, amount, options);
    if (step.kind !== 'deny') return [];
    return [violation(check, limit, state, d.nowMs, d.usage, nsToMs(step.retryAfterNs))];
  });
}

/** The admission: its signed lease, the wait a reservation asks for, every limit's status. */
function admit(
  d: Decision,
  outcomes: readonly ScopeOutcome[],
  signingKey: SigningKey,
): AcquireResult {
  const ok = outcomes.flatMap((o) => (o.kind === 'ok' ? [o] : []));
  const claims: LeaseClaims = {
    id: d.lease(),
    acquiredAtMs: d.nowMs,
    expiresAtMs: d.expiresAtMs,
    usage: d.usage,
    items: ok.map((o, i) => leasedItem(chargedCheck(d, i, o), o.state, o.atMs)),
    ...(d.request.price ? { price: d.request.price } : {}),
    ...(d.request.context ? { context: d.request.context } : {}),
  };
  let waitNs = 0n;
  ok.forEach((o, i) => {
    const priority = priorityAt(d.checks[i] as ScopeCheck, d.priority);
    for (const limit of o.at.check.limits) {
      if (limit.kind !== 'bucket' || limit.shadow) continue; // a shadow limit never delays
      const wait = bucketWaitNs(limit, o.state, toNs(o.atMs), priority);
      if (wait > waitNs) waitNs = wait;
    }
  });
  return {
    allowed: true,
    leaseId: signLease(claims, signingKey),
    waitMs: nsToMs(waitNs),
    limits: d.checks.flatMap((check, i) => {
      const o = ok[i] as (typeof ok)[number];
      return scopeStatuses(d.engine, check, o.atMs, { key: o.at.check.key, state: o.state });
    }),
    ...shadowOf(
      d.checks,
      ok.flatMap((o) => o.shadow),
    ),
  };
}

/**
 * What a lease remembers of a scope: the shard it took from, and the whole limits it was charged
 * (not the shadow limits that would have refused).
 */
const chargedCheck = (
  d: Decision,
  i: number,
  o: { readonly at: Placement; readonly shadow: readonly Violation[] },
): ScopeCheck => ({ ...charged(d.checks[i] as ScopeCheck, o.shadow), key: o.at.check.key });

/**
 * Gives back what each scope took for a call that is not admitted, the usage event's item with
 * its cancellation. Known charges are given back before the answer (until the deadline); writes
 * still in flight, and writes whose answer was lost, are settled in the background once their
 * outcome is known.
 */
async function compensate(d: Decision, outcomes: readonly ScopeOutcome[]): Promise<void> {
  const { engine } = d;
  const now: Promise<unknown>[] = [];
  outcomes.forEach((o, i) => {
    // The cancellation names the estimate it takes back: usage history subtracts it.
    const also = i === 0 ? d.event(CANCELLED, d.usage) : [];
    // The call was never admitted: usage history must not count it, whatever stays charged. Where
    // no give-back carried the cancellation, it goes alone (history counts it only if the event
    // was counted, the write may not have applied, and once: the give-back may have carried it).
    const cancelled = (given: Promise<boolean>, key: ItemKey) =>
      also.length === 0
        ? given
        : given.then((done) => (done ? undefined : writeAlone(engine, key, also)));
    if (o.kind === 'ok') {
      const taken = leasedItem(chargedCheck(d, i, o), o.state, o.atMs);
      const given = giveBack(engine, taken, d.usage, d.nowMs, also, lastWriteOf(o.state));
      now.push(cancelled(given, taken.key));
    } else if (o.kind === 'unknown') {
      const state = engine.stateOf(o.at.check.key) ?? {};
      const taken = leasedItem(chargedCheck(d, i, o), state, d.nowMs);
      const given = giveBackIfApplied(engine, taken, d.usage, d.nowMs, o.written, also);
      engine.background(cancelled(given, taken.key));
    } else if (o.kind === 'expired' && o.pending) {
      const check = chargedCheck(d, i, o);
      engine.background(cancelled(settleLate(d, check, o.pending, also), check.key));
    }
  });
  const all = Promise.all(now);
  try {
    await beforeDeadline(all, d.request.signal);
  } catch {
    engine.background(all); // the store is slow: the give-backs finish after the answer
  }
}

/** Gives back what a write that outlived its call's deadline took, once it lands. */
async function settleLate(
  d: Decision,
  check: ScopeCheck,
  pending: { readonly written: Promise<Written>; readonly before: string | undefined },
  also: readonly Assignment[],
): Promise<boolean> {
  const { engine } = d;
  let written: Written;
  try {
    written = await pending.written;
  } catch (error) {
    if (!(error instanceof WriteOutcomeUnknownError)) return true; // refused: nothing was taken
    const taken = leasedItem(check, engine.stateOf(check.key) ?? {}, d.nowMs);
    const lost = { writeId: error.writeId, before: pending.before };
    return giveBackIfApplied(engine, taken, d.usage, d.nowMs, lost, also);
  }
  if (written.again || !written.ok) return true;
  if (!engine.combiner) engine.remember(check.key, written.item ?? {});
  const taken = leasedItem(check, written.item ?? {}, written.atMs ?? d.nowMs);
  return giveBack(engine, taken, d.usage, d.nowMs, also, lastWriteOf(written.item));
}

/** The answer to a call that was not admitted (after {@link compensate}). */
function refuse(d: Decision, outcomes: readonly ScopeOutcome[]): AcquireResult {
  recordBudgets(
    d,
    outcomes.flatMap((o, i) => (o.kind === 'denied' ? [i] : [])),
  );
  const violations = outcomes.flatMap((o) => (o.kind === 'denied' ? o.violations : []));
  const shadow = outcomes.flatMap((o) => (o.kind === 'ok' || o.kind === 'denied' ? o.shadow : []));
  if (violations.length > 0)
    return { ...denial(d.engine, d.checks, violations, d.nowMs), ...shadowOf(d.checks, shadow) };
  for (const o of outcomes) {
    if (o.kind === 'failed') throw o.error;
    if (o.kind === 'expired') throw new DeadlineExceededError();
    if (o.kind === 'unknown')
      throw new StoreUnavailableError('a write to the store ended without an answer; retry');
  }
  throw new StoreUnavailableError('the limits kept changing under concurrent writers; retry');
}

/**
 * A refusal writes nothing of its usage; but a budget cut below what a quota has already used
 * refuses every call, and its alerts must still follow it: a refused scope whose item (as last
 * seen) records another budget definition gets the current one, in the background, once (the
 * write's answer is remembered). An item not written yet has used nothing and gets none.
 */
function recordBudgets(d: Decision, refused: readonly number[]): void {
  const { engine } = d;
  for (const i of refused) {
    const check = d.checks[i] as ScopeCheck;
    const state = engine.stateOf(check.key);
    // Unseen here: written only where the item records another definition (a failed condition
    // costs a write unit once; its answer is remembered).
    const set = budgetDefinitions(check, state, state === undefined);
    if (set.length === 0) continue;
    const differs: Condition[] = set.flatMap((a) =>
      'value' in a
        ? [{ or: [{ absent: a.attr }, { attr: a.attr, op: '<>', value: a.value }] }]
        : [],
    );
    // Only on a whole item: a decision made before this process knew the scope split has its
    // alerts on, and a shard judged against the whole budget would alert at its share.
    const exists: Condition = { and: [{ exists: TABLE_SCHEMA.partitionKey }, shardCondition(1)] };
    const condition: Condition = state ? exists : { and: [exists, { or: differs }] };
    const key = check.key;
    engine.background(
      engine.store.update({ key, set, condition }).then((r) => engine.remember(key, r.item ?? {})),
    );
  }
}

/** `shadowViolations` when any shadow limit applies to the request (else nothing). */
function shadowOf(
  checks: readonly ScopeCheck[],
  shadow: readonly Violation[],
): { shadowViolations?: readonly Violation[] } {
  return checks.some((c) => c.limits.some((l) => l.shadow)) ? { shadowViolations: shadow } : {};
}
