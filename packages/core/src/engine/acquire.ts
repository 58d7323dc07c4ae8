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
 */

import { withCost } from '../catalog/price.js';
import { PRIORITY } from '../defaults.js';
import {
  DeadlineExceededError,
  StoreUnavailableError,
  ValidationError,
  WriteOutcomeUnknownError,
} from '../errors.js';
import { itemAttributes, TABLE_SCHEMA } from '../store/schema.js';
import type { Assignment, ItemState } from '../store/types.js';
import { Budget, beforeDeadline } from './budget.js';
import type { Written } from './combining.js';
import {
  budgetDefinitions,
  charged,
  fits,
  type ItemStep,
  itemConsume,
  type Placement,
  place,
  priorityAt,
  whole,
} from './consume.js';
import { bucketWaitNs, NS_PER_MS } from './gcra.js';
import { giveBack, giveBackIfApplied, lastWriteOf, leasedItem, tagged } from './items.js';
import {
  type LeaseClaims,
  MAX_LEASE_ID_LENGTH,
  newLeaseId,
  type SigningKey,
  signLease,
} from './lease.js';
import { amountOf, type Limit, parseUsage, type Sharding, type Usage } from './limits.js';
import {
  counted,
  frozenAt,
  observe,
  parentOf,
  pickShard,
  shardingOf,
  shareOf,
  thawed,
  throttled,
} from './shards.js';
import { type Engine, keyOf, nsToMs, toNs } from './state.js';
import { denial, remembered, scopeStatuses, violation } from './statuses.js';
import type { AcquireRequest, AcquireResult, ScopeCheck, Violation } from './types.js';
import { CANCELLED, contextToWire, usageEvent } from './usage-context.js';

/** One acquire, validated: what every step of it works from. */
interface Decision {
  readonly engine: Engine;
  readonly request: AcquireRequest;
  readonly usage: Usage;
  readonly priority: number;
  readonly maxWaitMs: number;
  readonly checks: readonly ScopeCheck[];
  readonly shardings: readonly (Sharding | undefined)[];
  readonly nowMs: number;
  readonly expiresAtMs: number;
  /** The lease id, drawn only once something is to be written. */
  lease(): string;
  /** The usage event the first item written carries (none without a usage context). */
  event(version: number, counted: Usage): Assignment[];
}

/** How one scope's writes ended. */
type ScopeOutcome =
  | {
      readonly kind: 'ok';
      readonly state: ItemState;
      readonly at: Placement;
      /** When its write was planned: later than the call's own clock when combined. */
      readonly atMs: number;
      readonly shadow: Violation[];
    }
  | { readonly kind: 'denied'; readonly violations: Violation[]; readonly shadow: Violation[] }
  /** Attempts spent on contention while the last state seen had room. */
  | { readonly kind: 'contended' }
  /**
   * The deadline passed; `pending` is a write still in flight (it may yet land), planned when
   * the item's last write was `before`.
   */
  | {
      readonly kind: 'expired';
      readonly at: Placement;
      readonly pending?: {
        readonly written: Promise<Written>;
        readonly before: string | undefined;
      };
      readonly shadow: Violation[];
    }
  /** A write's answer was lost: the item may say whether it was applied. */
  | {
      readonly kind: 'unknown';
      readonly at: Placement;
      readonly written: { readonly writeId: string; readonly before: string | undefined };
      readonly shadow: Violation[];
    }
  | { readonly kind: 'failed'; readonly error: unknown };

/** Where a scope's writes stand between two tries. */
interface Cursor {
  at: Placement;
  step: ItemStep;
  readonly tried: Set<number>;
}

/**
 * Asks to take `usage` from every limit of every check, atomically per decision.
 *
 * @example
 * const result = await acquire(engine, {
 *   checks: [{ scope: 'entity', key: itemKeys.entityBucket('key-123', 'gpt-4o'), limits }],
 *   usage: { input_tokens: 1_500, output_tokens: 500 },
 * });
 */
export async function acquire(engine: Engine, request: AcquireRequest): Promise<AcquireResult> {
  const d = decision(engine, request);
  const tooLarge = neverFits(d);
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
  if (outcomes.every((o) => o.kind === 'ok')) return admit(d, outcomes, signingKey);
  await compensate(d, outcomes);
  return refuse(d, outcomes);
}

/** Validates the request into a {@link Decision}; a lease too long to settle is refused here. */
function decision(engine: Engine, request: AcquireRequest): Decision {
  const usage = withCost(parseUsage(request.usage, 'usage', { requests: 1 }), request.price);
  const priority = integerIn(
    request.priority ?? PRIORITY.max,
    'priority',
    PRIORITY.min,
    PRIORITY.max,
  );
  const maxWaitMs = integerIn(
    request.maxWaitMs ?? 0,
    'max_wait_ms',
    0,
    engine.tuning.maxWaitMsCeiling,
  );
  const checks = validChecks(request.checks);
  // The lease carries what it takes: one too long to settle is refused before anything is
  // written, naming the larger of the limits and the usage. (The JSON of what it is made of is
  // longer than the lease's own compact form.)
  const checksLength = checks.reduce((sum, check) => sum + jsonLength(check), 0);
  const usageLength = JSON.stringify(usage).length;
  const contextLength = JSON.stringify(request.context ?? 0).length;
  if (checksLength + usageLength + contextLength > MAX_LEASE_ID_LENGTH * 0.7) {
    const field = usageLength > checksLength ? 'usage' : 'limits';
    throw new ValidationError(field, 'more than one lease can carry');
  }
  const nowMs = engine.clock();
  const expiresAtMs = Math.floor(nowMs) + engine.tuning.leaseTtlMs;
  let drawn: string | undefined; // a refusal from memory draws none (128 random bits cost)
  const lease = () => {
    drawn ??= newLeaseId();
    return drawn;
  };
  const wire = request.context ? contextToWire(request.context) : undefined;
  return {
    engine,
    request,
    usage,
    priority,
    maxWaitMs,
    checks,
    shardings: checks.map((check) => shardingOf(check.limits)),
    nowMs,
    expiresAtMs,
    lease,
    // The first item written carries the usage event (its stream record is what usage history
    // counts), so a decision costs no write of its own for it.
    event: (version, taken) =>
      wire
        ? [
            {
              attr: itemAttributes.usageEvent,
              value: usageEvent(lease(), version, nowMs, expiresAtMs, taken, wire),
            },
          ]
        : [],
  };
}

/** The refusal of a request some limit can never hold (a sharded scope: its largest shard). */
function neverFits(d: Decision): AcquireResult | undefined {
  const { engine, checks, nowMs, usage } = d;
  const never = (check: ScopeCheck, shadow: boolean) =>
    shareOf(check.limits, 0, engine.shardCount(check.key)).flatMap((limit, j) =>
      (limit.shadow ?? false) === shadow &&
      !fits(limit, amountOf(usage, limit.metric), priorityAt(check, d.priority))
        ? [
            violation(
              check,
              check.limits[j] ?? limit,
              engine.stateOf(check.key),
              nowMs,
              usage,
              null,
            ),
          ]
        : [],
    );
  const violations = checks.flatMap((check) => never(check, false));
  if (violations.length === 0) return undefined;
  return {
    allowed: false,
    code: 'exceeds_capacity',
    retryAfterMs: null,
    violations,
    limits: remembered(engine, checks, nowMs),
    ...shadowOf(
      checks,
      checks.flatMap((check) => never(check, true)),
    ),
  };
}

/** Plans a scope's write on a shard from what this process remembers of it. */
function consumeAt(
  d: Decision,
  i: number,
  at: Placement,
  state: ItemState | undefined,
  mayDeny: boolean,
  taking = d.usage,
  atMs = d.nowMs,
): ItemStep {
  const also = () => [
    ...(i === 0 ? d.event(0, d.usage) : []),
    ...counted(d.shardings[i], at.shards),
  ];
  const options = {
    priority: d.priority,
    maxWaitNs: BigInt(d.maxWaitMs) * NS_PER_MS,
    mayDeny,
    adoptForMs: d.engine.tuning.definitionAdoptMs,
  };
  return itemConsume(d.engine, at.check, state, atMs, taking, options, at.shards, also);
}

/** The step memory suggests on a shard: it may deny only from a recent state. */
function consumeFromMemory(d: Decision, i: number, at: Placement): ItemStep {
  const seen = d.engine.seen.get(keyOf(at.check.key));
  const mayDeny = seen !== undefined && d.nowMs - seen.atMs <= d.engine.tuning.cacheDenyMaxAgeMs;
  return consumeAt(d, i, at, seen?.state, mayDeny);
}

/**
 * Each scope on one of its shards (a whole scope: its one item), with the step memory suggests;
 * a shard memory says refuses is swapped for another one that may admit.
 */
function fromMemory(d: Decision): Cursor[] {
  return d.checks.map((check, i) => {
    const at = place(d.engine, check, pickShard(d.engine.shardCount(check.key)));
    const step = consumeFromMemory(d, i, at);
    if (step.kind !== 'deny' || at.shards === 1) return { at, step, tried: new Set([at.index]) };
    const other = place(d.engine, check, pickShard(at.shards, new Set([at.index])));
    const second = consumeFromMemory(d, i, other);
    if (second.kind === 'deny') return { at, step, tried: new Set([at.index]) };
    return { at: other, step: second, tried: new Set([other.index]) };
  });
}

/** Writes one scope until it admits, refuses, runs out of attempts or of time. */
async function writeScope(d: Decision, i: number, cursor: Cursor): Promise<ScopeOutcome> {
  const { engine } = d;
  const check = d.checks[i] as ScopeCheck;
  const budget = new Budget(engine.tuning.maxAttempts, d.request.signal);
  for (;;) {
    const { at, step } = cursor;
    if (step.kind === 'deny') {
      // One more shard before refusing, so that a refusal means the scope is short.
      if (at.shards === 1 || cursor.tried.size > 1) {
        const violations = whole(engine, check, step.violations, d.nowMs);
        return { kind: 'denied', violations, shadow: step.shadow };
      }
      cursor.at = place(engine, check, pickShard(at.shards, cursor.tried));
      cursor.tried.add(cursor.at.index);
      cursor.step = consumeFromMemory(d, i, cursor.at);
      continue;
    }
    const { shadow } = step;
    if (step.kind === 'none') return { kind: 'ok', state: {}, shadow, at, atMs: d.nowMs };
    if (budget.expired) return { kind: 'expired', at, shadow };
    const before = lastWriteOf(engine.stateOf(at.check.key));
    const sending = send(d, i, at, step);
    let written: Written;
    try {
      written = await budget.within(sending);
    } catch (error) {
      if (error instanceof DeadlineExceededError)
        return { kind: 'expired', at, pending: { written: sending, before }, shadow };
      if (error instanceof WriteOutcomeUnknownError)
        return { kind: 'unknown', at, written: { writeId: error.writeId, before }, shadow };
      return { kind: 'failed', error };
    }
    const next = await afterWrite(d, i, cursor, step, written, budget);
    if (next !== undefined) return next;
  }
}

/** Sends a scope's write: through the combiner when there is one, tagged with its id. */
function send(d: Decision, i: number, at: Placement, step: ItemStep & { kind: 'write' }) {
  const { engine } = d;
  const key = at.check.key;
  const check = d.checks[i] as ScopeCheck;
  // Only calls that write nothing of their own are combined (see combining.ts).
  const alone =
    d.maxWaitMs > 0 ||
    at.shards > 1 ||
    d.shardings[i] !== undefined ||
    (i === 0 && d.request.context !== undefined) ||
    step.converts ||
    check.limits.some((limit) => limit.shadow);
  const written: Promise<Written> = engine.combiner
    ? engine.combiner(engine, {
        key,
        update: step.update,
        usage: d.usage,
        nowMs: d.nowMs,
        plan: (taking, state, atMs) => consumeAt(d, i, at, state, true, taking, atMs),
        ...(alone
          ? {}
          : { like: () => JSON.stringify([at.check.limits, priorityAt(check, d.priority)]) }),
      })
    : tagged(engine, step.update);
  return written.catch((error: unknown) => {
    if (error instanceof StoreUnavailableError && error.notApplied)
      throttled(engine, key, d.shardings[i]);
    throw error;
  });
}

/**
 * What a write's answer means for its scope: its outcome, or (undefined) the cursor moved to
 * the next try. Failures that are others' progress rather than contention (a conversion failed by
 * an increment from a process still on the older definition, a write at a share the item no
 * longer holds, a split under way) do not use up attempts, or a call would refuse with room left.
 */
async function afterWrite(
  d: Decision,
  i: number,
  cursor: Cursor,
  step: ItemStep & { kind: 'write' },
  written: Written,
  budget: Budget,
): Promise<ScopeOutcome | undefined> {
  const { engine } = d;
  const check = d.checks[i] as ScopeCheck;
  const { at } = cursor;
  const key = at.check.key;
  if (written.again) {
    cursor.step = consumeAt(d, i, at, engine.stateOf(key), true);
    return budget.waited() ? undefined : lastSeen(d, i, cursor);
  }
  const state = written.item ?? {};
  if (!engine.combiner) engine.remember(key, state); // (a combiner remembers in order)
  if (written.ok) {
    observe(engine, key, state, d.shardings[i]);
    return { kind: 'ok', state, shadow: step.shadow, at, atMs: written.atMs ?? d.nowMs };
  }
  let more: boolean;
  if (frozenAt(state) !== undefined) {
    // Mid-split: another shard, or wait for the split.
    more = budget.waited();
    if (at.shards > 1 && cursor.tried.size < at.shards) {
      cursor.at = place(engine, check, pickShard(at.shards, cursor.tried));
      cursor.tried.add(cursor.at.index);
    } else {
      try {
        await budget.within(thawed(engine, key, state));
      } catch (error) {
        if (error instanceof DeadlineExceededError)
          return { kind: 'expired', at, shadow: step.shadow };
        throw error;
      }
    }
  } else {
    // Not born yet: its parent holds it; else at the share the item holds.
    const index = written.item === undefined && at.index > 0 ? parentOf(at.index) : at.index;
    cursor.at = place(engine, check, index);
    more = step.converts || cursor.at.shards !== at.shards ? budget.waited() : budget.lost();
  }
  cursor.step = consumeAt(d, i, cursor.at, engine.stateOf(cursor.at.check.key), true);
  return more ? undefined : lastSeen(d, i, cursor);
}

/**
 * The outcome of a scope whose attempts ran out: a refusal if the last state seen proves one
 * (a real limit, a real retry time), else contention with room to spare.
 */
function lastSeen(d: Decision, i: number, cursor: Cursor): ScopeOutcome {
  const step = consumeAt(d, i, cursor.at, d.engine.stateOf(cursor.at.check.key), true);
  if (step.kind !== 'deny') return { kind: 'contended' };
  const violations = whole(d.engine, d.checks[i] as ScopeCheck, step.violations, d.nowMs);
  return { kind: 'denied', violations, shadow: step.shadow };
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
  const now: Promise<void>[] = [];
  outcomes.forEach((o, i) => {
    const also = () => (i === 0 ? d.event(CANCELLED, {}) : []);
    if (o.kind === 'ok') {
      const taken = leasedItem(chargedCheck(d, i, o), o.state, o.atMs);
      now.push(giveBack(engine, taken, d.usage, d.nowMs, also(), lastWriteOf(o.state)));
    } else if (o.kind === 'unknown') {
      const state = engine.stateOf(o.at.check.key) ?? {};
      const taken = leasedItem(chargedCheck(d, i, o), state, d.nowMs);
      engine.background(giveBackIfApplied(engine, taken, d.usage, d.nowMs, o.written, also()));
    } else if (o.kind === 'expired' && o.pending) {
      engine.background(settleLate(d, chargedCheck(d, i, o), o.pending, also()));
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
): Promise<void> {
  const { engine } = d;
  let written: Written;
  try {
    written = await pending.written;
  } catch (error) {
    if (!(error instanceof WriteOutcomeUnknownError)) return; // refused: nothing was taken
    const taken = leasedItem(check, engine.stateOf(check.key) ?? {}, d.nowMs);
    const lost = { writeId: error.writeId, before: pending.before };
    return giveBackIfApplied(engine, taken, d.usage, d.nowMs, lost, also);
  }
  if (written.again || !written.ok) return;
  if (!engine.combiner) engine.remember(check.key, written.item ?? {});
  const taken = leasedItem(check, written.item ?? {}, written.atMs ?? d.nowMs);
  await giveBack(engine, taken, d.usage, d.nowMs, also, lastWriteOf(written.item));
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
    const { key } = d.checks[i] as ScopeCheck;
    const state = engine.stateOf(key);
    const set = state ? budgetDefinitions(d.checks[i] as ScopeCheck, state, false) : [];
    if (set.length === 0) continue;
    const condition = { exists: TABLE_SCHEMA.partitionKey };
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

/**
 * The JSON length of each list of limits (a configuration cache's, say) and the count it was
 * measured at: a list grown since is measured again.
 */
const limitsLengths = new WeakMap<readonly Limit[], [count: number, json: number]>();

/**
 * About a check's JSON length: its limits' (measured once per list: this runs for every
 * decision, refusals from memory too), its key's and its label's, and room for the rest.
 */
function jsonLength({ limits, scope, key }: ScopeCheck): number {
  let [count, json = 0] = limitsLengths.get(limits) ?? [];
  if (count !== limits.length) {
    [count, json] = [limits.length, JSON.stringify(limits).length];
    limitsLengths.set(limits, [count, json]);
  }
  return json + scope.length + key.pk.length + key.sk.length + 64;
}

function integerIn(value: number, field: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** The checks of a request: at least one, each on its own item, priorities in range. */
export function validChecks(checks: readonly ScopeCheck[]): readonly ScopeCheck[] {
  if (checks.length === 0) throw new ValidationError('limits', 'no limits apply to this request');
  const keys = new Set(checks.map((check) => keyOf(check.key)));
  if (keys.size !== checks.length) throw new ValidationError('limits', 'two scopes share one item');
  for (const check of checks) {
    if (check.priority !== undefined)
      integerIn(check.priority, 'priority', PRIORITY.min, PRIORITY.max);
  }
  return checks;
}
