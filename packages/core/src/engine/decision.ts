/**
 * One acquire as a decision: the request validated (a lease too long to settle is refused
 * before anything is written), what each of its steps works from, and the steps memory
 * suggests for each scope before anything is written. acquire.ts runs the decision.
 */

import { withCost } from '../catalog/price.js';
import { PRIORITY } from '../defaults.js';
import { ValidationError } from '../errors.js';
import { itemAttributes, shardKey } from '../store/schema.js';
import type { Assignment, ItemState } from '../store/types.js';
import type { Written } from './combining.js';
import { alertsOff, type ItemStep, itemConsume, type Placement, place } from './consume.js';
import { MAX_LEASE_ID_LENGTH, newLeaseId } from './lease.js';
import { type Limit, parseUsage, type Sharding, type Usage } from './limits.js';
import { NS_PER_MS } from './nanos.js';
import { counted, pickShard, seenBorn, shardingOf } from './shards.js';
import { type EngineState, keyOf } from './state.js';
import type { AcquireRequest, ScopeCheck, Violation } from './types.js';
import {
  checkUsageContext,
  contextToWire,
  type UsageContext,
  usageEvent,
} from './usage-context.js';

/** One acquire, validated: what every step of it works from. */
export interface Decision {
  readonly engine: EngineState;
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
export type ScopeOutcome =
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
export interface Cursor {
  at: Placement;
  step: ItemStep;
  readonly tried: Set<number>;
}

/** Validates the request into a {@link Decision}; a lease too long to settle is refused here. */
export function decision(engine: EngineState, request: AcquireRequest): Decision {
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
  // A scope that is or may be sharded (as its limits ask, or as items seen here say) carries no
  // budget alerts.
  const checks = validChecks(request.checks).map((c) => alertsOff(c, engine.shardCount(c.key)));
  checkUsageContext(request.context);
  // The lease carries what it takes: one too long to settle is refused before anything is
  // written, naming the larger of the limits and the usage.
  const room = leaseRoom(checks, usage, request.context);
  if (!room.fits) {
    const field = room.usage > room.checks ? 'usage' : 'limits';
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

/** Plans a scope's write on a shard from what this process remembers of it. */
export function consumeAt(
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

/**
 * The step memory suggests on a shard: it may deny only from a state recent at `nowMs` (the
 * decision's clock reading, or later, once it has waited on writes).
 */
export function consumeFromMemory(
  d: Decision,
  i: number,
  at: Placement,
  nowMs = d.nowMs,
): ItemStep {
  const key = at.check.key;
  return consumeAt(d, i, at, d.engine.stateOf(key), d.engine.recent(key, nowMs));
}

/**
 * Each scope on one of its shards (a whole scope: its one item), with the step memory suggests;
 * a shard memory says refuses is swapped for another one that may admit.
 */
export function fromMemory(d: Decision): Cursor[] {
  return d.checks.map((check, i) => {
    const at = place(d.engine, check, pickShard(d.engine.shardCount(check.key)));
    const step = consumeFromMemory(d, i, at);
    if (step.kind !== 'deny' || at.shards === 1) return { at, step, tried: new Set([at.index]) };
    const other = place(d.engine, check, pickShard(at.shards, new Set([at.index])));
    const second = consumeFromMemory(d, i, other);
    if (second.kind !== 'deny') return { at: other, step: second, tried: new Set([other.index]) };
    const tried = new Set([at.index, other.index]);
    const roomy = roomyShard(d, i, tried);
    if (roomy === undefined) return { at, step, tried: new Set([at.index]) };
    const third = place(d.engine, check, roomy);
    tried.add(roomy);
    return { at: third, step: consumeFromMemory(d, i, third), tried };
  });
}

/**
 * A shard other than those `tried` that this process last saw with room for the call, if any
 * (never one it has not seen: a cold process does not write to every shard of a full scope). Two
 * shards refusing do not make the scope short: memory may know of others with room.
 */
export function roomyShard(d: Decision, i: number, tried: ReadonlySet<number>): number | undefined {
  const { engine } = d;
  const check = d.checks[i] as ScopeCheck;
  const roomy: number[] = [];
  for (let s = 0; s < engine.shardCount(check.key); s++) {
    if (tried.has(s)) continue;
    const state = engine.stateOf(shardKey(check.key, s));
    if (!seenBorn(s, state)) continue; // unseen or unborn
    if (consumeAt(d, i, place(engine, check, s), state, true).kind !== 'deny') roomy.push(s);
  }
  return roomy[Math.floor(Math.random() * roomy.length)];
}

/**
 * The JSON length of each list of limits (a configuration cache's, say) and the count it was
 * measured at: a list grown since is measured again.
 */
const limitsLengths = new WeakMap<readonly Limit[], [count: number, json: number]>();

/**
 * How much of a lease a decision would take: the JSON lengths of its checks, its usage and its
 * usage context (longer than the lease's own compact form), and whether they fit one lease
 * (with room for the rest of it).
 */
export function leaseRoom(
  checks: readonly ScopeCheck[],
  usage: Usage,
  context: UsageContext | undefined,
): { readonly checks: number; readonly usage: number; readonly fits: boolean } {
  const checksLength = checks.reduce((sum, check) => sum + jsonLength(check), 0);
  const usageLength = JSON.stringify(usage).length;
  const contextLength = JSON.stringify(context ?? 0).length;
  const fits = checksLength + usageLength + contextLength <= MAX_LEASE_ID_LENGTH * 0.7;
  return { checks: checksLength, usage: usageLength, fits };
}

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
