/**
 * One scope of an acquire, written: the step memory suggested, sent (through the combiner when
 * there is one), and tried again from what a failed condition returns, within the decision's
 * budget of attempts and its deadline (budget.ts), until the scope admits or refuses. Failures
 * that are others' progress (a conversion, a split) do not use up attempts.
 */
import {
  DeadlineExceededError,
  StoreUnavailableError,
  WriteOutcomeUnknownError,
} from '../errors.js';
import { Budget } from './budget.js';
import type { Written } from './combining.js';
import { type ItemStep, type Placement, place, priorityAt, whole } from './consume.js';
import {
  type Cursor,
  consumeAt,
  consumeFromMemory,
  type Decision,
  roomyShard,
  type ScopeOutcome,
} from './decision.js';
import { observe, thawed, throttled } from './growth.js';
import { frozenAt, parentOf, pickShard } from './shards.js';
import { lastWriteOf, tagged } from './tagged-writes.js';
import type { ScopeCheck } from './types.js';

/** Writes one scope until it admits, refuses, runs out of attempts or of time. */
export async function writeScope(d: Decision, i: number, cursor: Cursor): Promise<ScopeOutcome> {
  const { engine } = d;
  const check = d.checks[i] as ScopeCheck;
  const budget = new Budget(engine.tuning.maxAttempts, d.request.signal);
  for (;;) {
    const { at, step } = cursor;
    if (step.kind === 'deny') {
      // One more shard before refusing, and then any this process saw with room, so that a
      // refusal means the scope is short.
      const next =
        at.shards === 1
          ? undefined
          : cursor.tried.size < 2
            ? pickShard(at.shards, cursor.tried)
            : roomyShard(d, i, cursor.tried);
      if (next === undefined) {
        const violations = whole(engine, check, step.violations, d.nowMs);
        return { kind: 'denied', violations, shadow: step.shadow };
      }
      cursor.at = place(engine, check, next);
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
        signal: d.request.signal,
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
    cursor.step = fromLastSeen(d, i, at);
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
  cursor.step = fromLastSeen(d, i, cursor.at);
  return more ? undefined : lastSeen(d, i, cursor);
}

/**
 * The step the last state seen of a shard suggests. It may deny only when that state is recent
 * now: after a write that failed, the item it returned is; but a write of this process that
 * ended in an error (throttling) taught nothing, and another shard's memory may be old.
 */
const fromLastSeen = (d: Decision, i: number, at: Placement): ItemStep =>
  consumeFromMemory(d, i, at, d.engine.clock());

/**
 * The outcome of a scope whose attempts ran out: a refusal if the last state seen proves one
 * (a real limit, a real retry time), else contention with room to spare.
 */
function lastSeen(d: Decision, i: number, cursor: Cursor): ScopeOutcome {
  const step = fromLastSeen(d, i, cursor.at);
  if (step.kind !== 'deny') return { kind: 'contended' };
  const violations = whole(d.engine, d.checks[i] as ScopeCheck, step.violations, d.nowMs);
  return { kind: 'denied', violations, shadow: step.shadow };
}
