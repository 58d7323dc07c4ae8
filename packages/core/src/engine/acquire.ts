/**
 * acquire: one conditional UpdateItem per scope item, sent in parallel, no read. The branch
 * (idle/busy, new/same window) is guessed from the last state this process saw; a failed
 * condition hands back the old item, which either proves a denial or fixes the guess. If any
 * item denies, the items that admitted are given back: a denial consumes nothing. If a write
 * throws instead (throttling, a network error), the same give-back runs before the error reaches
 * the caller, so a failed acquire leaves nothing charged. A request the last state seen proves
 * cannot fit is denied from memory (no write). In a process serving many calls at once, the
 * engine's combiner sends the writes: concurrent calls on one item share one (combining.ts).
 */

import { withCost } from '../catalog/price.js';
import { PRIORITY } from '../defaults.js';
import { StoreUnavailableError, ValidationError } from '../errors.js';
import { bucketAttributes, itemAttributes, shardKey } from '../store/schema.js';
import type { Assignment, ItemState, ItemUpdate } from '../store/types.js';
import type { Written } from './combining.js';
import { bucketConsume, bucketFits, bucketWaitNs, NS_PER_MS, type Step } from './gcra.js';
import { combine, giveBack, leasedItem } from './items.js';
import { type LeaseClaims, MAX_LEASE_ID_LENGTH, newLeaseId, signLease } from './lease.js';
import { amountOf, type Limit, parseUsage, type Usage } from './limits.js';
import { quotaConsume, quotaFits } from './quota.js';
import {
  counted,
  frozenAt,
  MAX_WAITS,
  observe,
  parentOf,
  pickShard,
  shardCondition,
  shardingOf,
  shardsAt,
  shareOf,
  thawed,
  throttled,
} from './shards.js';
import { type Engine, keyOf, nsToMs, toNs } from './state.js';
import { denial, remembered, scopeStatuses, violation } from './statuses.js';
import type { AcquireRequest, AcquireResult, ScopeCheck, Violation } from './types.js';
import { CANCELLED, contextToWire, usageEvent } from './usage-context.js';

/** The would-be refusals of shadow limits (which were not charged for them). */
interface Shadowed {
  readonly shadow: readonly Violation[];
}

type ItemStep =
  | { readonly kind: 'deny'; readonly violations: Violation[] }
  | ({
      readonly kind: 'write';
      readonly update: ItemUpdate;
      /** It converts a limit to a newer definition (an exact-match write). */
      readonly converts: boolean;
    } & Shadowed)
  | ({ readonly kind: 'none' } & Shadowed);

type ConsumeOutcome =
  | ({
      readonly kind: 'ok';
      readonly state: ItemState;
      readonly at: Placement;
      /** When its write was planned: later than the call's own clock when combined. */
      readonly atMs: number;
    } & Shadowed)
  | { readonly kind: 'denied'; readonly violations: Violation[] }
  | { readonly kind: 'contended' };

/** A check without the shadow limits that would have refused (and so were not charged). */
const charged = (check: ScopeCheck, shadow: readonly Violation[]): ScopeCheck =>
  shadow.length === 0
    ? check
    : { ...check, limits: check.limits.filter((l) => !shadow.some((v) => v.name === l.name)) };

interface ConsumeOptions {
  readonly priority: number;
  readonly maxWaitNs: bigint;
  readonly mayDeny: boolean;
}

const priorityAt = (check: ScopeCheck, priority: number) =>
  Math.min(priority, check.priority ?? PRIORITY.max);

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
  if (
    checksLength + usageLength + JSON.stringify(request.context ?? 0).length >
    MAX_LEASE_ID_LENGTH * 0.7
  ) {
    const field = usageLength > checksLength ? 'usage' : 'limits';
    throw new ValidationError(field, 'more than one lease can carry');
  }
  const nowMs = engine.clock();
  const consume = { priority, maxWaitNs: BigInt(maxWaitMs) * NS_PER_MS };

  // A sharded scope can hold no more than one shard's share (its largest, shard 0's).
  const tooLarge = checks.flatMap((check) => {
    const shards = engine.shardCount(check.key);
    return shareOf(check.limits, 0, shards).flatMap((limit, j) =>
      // A shadow limit is reported in itemConsume instead, as a shadow violation.
      !limit.shadow && !fits(limit, amountOf(usage, limit.metric), priorityAt(check, priority))
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
  });
  if (tooLarge.length > 0) {
    return {
      allowed: false,
      code: 'exceeds_capacity',
      retryAfterMs: null,
      violations: tooLarge,
      limits: remembered(engine, checks, nowMs),
      ...shadowOf(checks, []),
    };
  }
  // The first item written carries the usage event (its stream record is what usage history
  // counts), so a decision costs no write of its own for it.
  // Drawn only when something is written: a refusal from memory needs none (it is the hot
  // path of a throttled key, and 128 random bits cost more than the rest of it).
  let drawn: string | undefined;
  const lease = () => {
    drawn ??= newLeaseId();
    return drawn;
  };
  const expiresAtMs = Math.floor(nowMs) + engine.tuning.leaseTtlMs;
  const wire = request.context ? contextToWire(request.context) : undefined;
  const event = (version: number, counted: Usage): Assignment[] =>
    wire
      ? [
          {
            attr: itemAttributes.usageEvent,
            value: usageEvent(lease(), version, nowMs, expiresAtMs, counted, wire),
          },
        ]
      : [];
  const shardings = checks.map((check) => shardingOf(check.limits));
  const consumeItem = (
    at: Placement,
    i: number,
    state: ItemState | undefined,
    may: boolean,
    taking = usage,
    atMs = nowMs,
  ) =>
    itemConsume(
      engine,
      at.check,
      state,
      atMs,
      taking,
      { ...consume, mayDeny: may },
      at.shards,
      () => [...(i === 0 ? event(0, usage) : []), ...counted(shardings[i], at.shards)],
    );
  /** The step memory suggests on a shard: it may deny only from a recent state. */
  const fromMemory = (at: Placement, i: number) => {
    const seen = engine.seen.get(keyOf(at.check.key));
    const mayDeny = seen !== undefined && nowMs - seen.atMs <= engine.tuning.cacheDenyMaxAgeMs;
    return consumeItem(at, i, seen?.state, mayDeny);
  };

  // Each scope on one of its shards (a whole scope: its one item); a shard memory says refuses
  // is swapped for another one that may admit.
  const placements = checks.map((check) =>
    place(engine, check, pickShard(engine.shardCount(check.key))),
  );
  const first = checks.map((check, i) => {
    const at = placements[i] as Placement;
    const step = fromMemory(at, i);
    if (step.kind !== 'deny' || at.shards === 1) return step;
    const other = place(engine, check, pickShard(at.shards, new Set([at.index])));
    const second = fromMemory(other, i);
    if (second.kind === 'deny') return step;
    placements[i] = other;
    return second;
  });
  const deniedFromMemory = first.flatMap((step, i) =>
    step.kind === 'deny' ? whole(engine, checks[i] as ScopeCheck, step.violations, nowMs) : [],
  );
  if (deniedFromMemory.length > 0) {
    const shadow = first.flatMap((step) => (step.kind === 'deny' ? [] : step.shadow));
    return { ...denial(engine, checks, deniedFromMemory, nowMs), ...shadowOf(checks, shadow) };
  }
  // Before any write (a failure here changes nothing), after what is refused without one (the
  // key is created where the table has none, and a request that can never fit writes nothing).
  const signingKey = await engine.keys.current();

  const settled = await Promise.allSettled(
    checks.map(async (check, i): Promise<ConsumeOutcome> => {
      let step = first[i] as ItemStep;
      let at = placements[i] as Placement;
      const tried = new Set([at.index]);
      let waits = 0;
      const sharding = shardings[i];
      for (let attempt = 0; attempt < engine.tuning.maxAttempts; attempt++) {
        if (step.kind === 'deny') {
          // One more shard before refusing, so that a refusal means the scope is short.
          if (at.shards === 1 || tried.size > 1)
            return { kind: 'denied', violations: whole(engine, check, step.violations, nowMs) };
          at = place(engine, check, pickShard(at.shards, tried));
          tried.add(at.index);
          step = fromMemory(at, i);
          attempt--;
          continue;
        }
        if (step.kind === 'none')
          return { kind: 'ok', state: {}, shadow: step.shadow, at, atMs: nowMs };
        const key = at.check.key;
        const result: Written = await (engine.combiner
          ? engine.combiner(engine, {
              key,
              update: step.update,
              usage,
              nowMs,
              plan: (taking, state, atMs) => consumeItem(at, i, state, true, taking, atMs),
              // Only calls that write nothing of their own (see combining.ts).
              ...(maxWaitMs > 0 ||
              at.shards > 1 ||
              sharding ||
              (i === 0 && wire) ||
              step.converts ||
              check.limits.some((limit) => limit.shadow)
                ? {}
                : { like: () => JSON.stringify([at.check.limits, priorityAt(check, priority)]) }),
            })
          : engine.store.update(step.update)
        ).catch((error: unknown) => {
          if (error instanceof StoreUnavailableError && error.notApplied)
            throttled(engine, key, sharding);
          throw error;
        });
        if (result.again) {
          if (waits++ < MAX_WAITS) attempt--;
          step = consumeItem(at, i, engine.stateOf(key), true);
          continue;
        }
        const state = result.item ?? {};
        if (!engine.combiner) engine.remember(key, state); // (a combiner remembers in order)
        if (result.ok) {
          observe(engine, key, state, sharding);
          return { kind: 'ok', state, shadow: step.shadow, at, atMs: result.atMs ?? nowMs };
        }
        if (frozenAt(state) !== undefined) {
          // Mid-split: another shard, or wait for the split (not counted as an attempt).
          if (waits++ < MAX_WAITS) attempt--;
          if (at.shards > 1 && tried.size < at.shards) {
            at = place(engine, check, pickShard(at.shards, tried));
            tried.add(at.index);
          } else await thawed(engine, key, state);
        } else {
          const shares = at.shards;
          if (result.item === undefined && at.index > 0)
            at = place(engine, check, parentOf(at.index)); // not born yet: its parent holds it
          else at = place(engine, check, at.index); // at the share the item holds
          // Failures that are others' progress rather than contention do not use up attempts,
          // or a call would refuse with room to spare: a conversion, which matches the item
          // exactly, failed by an increment from a process still on the older definition; a
          // write at a share the item no longer holds, failed by a split.
          if ((step.converts || at.shards !== shares) && waits++ < MAX_WAITS) attempt--;
        }
        step = consumeItem(at, i, engine.stateOf(at.check.key), true);
      }
      return { kind: 'contended' };
    }),
  );
  const outcomes = settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
  const shadow = outcomes.flatMap((o) => (o?.kind === 'ok' ? o.shadow : []));
  /** What a lease remembers of a scope: the shard it took from, and the whole limits. */
  const chargedCheck = (i: number): ScopeCheck | undefined => {
    const check = checks[i];
    const outcome = outcomes[i];
    return check && outcome?.kind === 'ok'
      ? { ...charged(check, outcome.shadow), key: outcome.at.check.key }
      : undefined;
  };
  /**
   * When an item's write was planned: its quota window and what the answer reports of it are
   * taken then. (The lease keeps the call's own time: drain counted from the earlier time never
   * gives back more than a combined write took.)
   */
  const plannedAt = (i: number) => {
    const outcome = outcomes[i];
    return outcome?.kind === 'ok' ? outcome.atMs : nowMs;
  };

  if (outcomes.every((o) => o?.kind === 'ok')) {
    const states = outcomes.map((o) => (o?.kind === 'ok' ? o.state : {}));
    const claims: LeaseClaims = {
      id: lease(),
      acquiredAtMs: nowMs,
      expiresAtMs,
      usage,
      items: checks.map((check, i) =>
        leasedItem(chargedCheck(i) ?? check, states[i] ?? {}, plannedAt(i)),
      ),
      ...(request.price ? { price: request.price } : {}),
      ...(request.context ? { context: request.context } : {}),
    };
    let waitNs = 0n;
    checks.forEach((check, i) => {
      const outcome = outcomes[i];
      const limits = outcome?.kind === 'ok' ? outcome.at.check.limits : check.limits;
      for (const limit of limits) {
        if (limit.kind !== 'bucket') continue;
        const atNs = toNs(plannedAt(i));
        const wait = bucketWaitNs(limit, states[i] ?? {}, atNs, priorityAt(check, priority));
        if (wait > waitNs) waitNs = wait;
      }
    });
    return {
      allowed: true,
      leaseId: signLease(claims, signingKey),
      waitMs: nsToMs(waitNs),
      limits: checks.flatMap((check, i) => {
        const outcome = outcomes[i];
        const fresh =
          outcome?.kind === 'ok'
            ? { key: outcome.at.check.key, state: states[i] ?? {} }
            : undefined;
        return scopeStatuses(engine, check, plannedAt(i), fresh);
      }),
      ...shadowOf(checks, shadow),
    };
  }

  // Give back what the admitting items took, then refuse (or fail, if a write threw). The item
  // that carried the usage event carries its cancellation.
  await Promise.all(
    outcomes.map((outcome, i) => {
      const check = chargedCheck(i);
      if (outcome?.kind !== 'ok' || !check) return undefined;
      const item = leasedItem(check, outcome.state, outcome.atMs);
      return giveBack(engine, item, usage, nowMs, i === 0 ? event(CANCELLED, {}) : []);
    }),
  );
  const thrown = settled.find((s) => s.status === 'rejected');
  if (thrown) throw thrown.reason;
  const violations = outcomes.flatMap((o) => (o?.kind === 'denied' ? o.violations : []));
  return { ...denial(engine, checks, violations, nowMs), ...shadowOf(checks, shadow) };
}

/** `shadowViolations` when any shadow limit applies to the request (else nothing). */
function shadowOf(
  checks: readonly ScopeCheck[],
  shadow: readonly Violation[],
): { shadowViolations?: readonly Violation[] } {
  return checks.some((c) => c.limits.some((l) => l.shadow)) ? { shadowViolations: shadow } : {};
}

/**
 * What taking `usage` from one item's limits would do. A shadow limit that would refuse is left
 * uncharged and reported instead. `also` is written with the item (the usage event); a quota
 * with budget alerts records its definition beside its window for the usage aggregator.
 */
function itemConsume(
  engine: Engine,
  check: ScopeCheck,
  state: ItemState | undefined,
  nowMs: number,
  usage: Usage,
  options: ConsumeOptions,
  shards: number,
  also: () => readonly Assignment[],
): ItemStep {
  const at = { ...options, priority: priorityAt(check, options.priority) };
  const violations: Violation[] = [];
  const shadow: Violation[] = [];
  const steps = check.limits.map((limit): Step => {
    const amount = amountOf(usage, limit.metric);
    const never = limit.shadow && !fits(limit, amount, at.priority);
    const step = never
      ? ({ kind: 'deny', retryAfterNs: -1n } as const)
      : limitConsume(limit, state, nowMs, amount, at);
    if (step.kind !== 'deny') return step;
    const retryAfterMs = never ? null : nsToMs(step.retryAfterNs);
    (limit.shadow ? shadow : violations).push(
      violation(check, limit, state, nowMs, usage, retryAfterMs),
    );
    return { kind: 'skip' };
  });
  if (violations.length > 0) return { kind: 'deny', violations };
  const writes = steps.some((step) => step.kind === 'write');
  const extra: Assignment[] = [...also()];
  if (writes) {
    for (const limit of check.limits) {
      if (limit.kind !== 'quota' || !limit.alerts) continue;
      const attr = bucketAttributes.alerts(limit.name);
      extra.push({ attr, value: `${limit.limit}|${limit.alerts.join(',')}` });
    }
  }
  const update = combine(
    engine,
    check.key,
    [...steps, { kind: 'write', set: extra }],
    state,
    nowMs,
    shardCondition(shards),
    shards,
  );
  if (!update) return { kind: 'none', shadow };
  const converts = steps.some((step) => step.kind === 'write' && step.converts === true);
  return { kind: 'write', update, converts, shadow };
}

/** A scope on one of its shards: the shard's key and its share of the limits. */
interface Placement {
  readonly check: ScopeCheck;
  readonly index: number;
  /** The shard count the shard holds its share at (as last seen; its writes check it). */
  readonly shards: number;
}

function place(engine: Engine, check: ScopeCheck, index: number): Placement {
  const key = shardKey(check.key, index);
  const shards = shardsAt(engine, key);
  return { check: { ...check, key, limits: shareOf(check.limits, index, shards) }, index, shards };
}

/** A shard's violations as the whole scope's: its whole limit and what remains of it. */
function whole(
  engine: Engine,
  check: ScopeCheck,
  violations: readonly Violation[],
  nowMs: number,
): Violation[] {
  if (engine.shardCount(check.key) === 1) return [...violations];
  const standing = scopeStatuses(engine, check, nowMs);
  return violations.map((v) => {
    const limit = check.limits.find((l) => l.name === v.name);
    const status = standing.find((st) => st.name === v.name);
    return {
      ...v,
      ...(limit ? { limit: limit.limit } : {}),
      ...(status ? { remaining: status.remaining } : {}),
    };
  });
}

const fits = (limit: Limit, amount: number, priority: number): boolean =>
  limit.kind === 'bucket'
    ? bucketFits(limit, amount, priority)
    : quotaFits(limit, amount, priority);

/** What taking `amount` from one limit would do, given an item's state. */
export function limitConsume(
  limit: Limit,
  state: ItemState | undefined,
  nowMs: number,
  amount: number,
  options: ConsumeOptions,
): Step {
  return limit.kind === 'bucket'
    ? bucketConsume(limit, state, toNs(nowMs), amount, options)
    : quotaConsume(limit, state, nowMs, amount, options);
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
