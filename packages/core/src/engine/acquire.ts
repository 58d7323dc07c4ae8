/**
 * acquire: one conditional UpdateItem per scope item, sent in parallel, no read. The branch
 * (idle/busy, new/same window) is guessed from the last state this process saw; a failed
 * condition hands back the old item, which either proves a denial or fixes the guess. If any
 * item denies, the items that admitted are given back: a denial consumes nothing. If a write
 * throws instead (throttling, a network error), the same give-back runs before the error reaches
 * the caller, so a failed acquire leaves nothing charged. A request the last state seen proves
 * cannot fit is denied from memory (no write).
 */

import { withCost } from '../catalog/price.js';
import { PRIORITY } from '../defaults.js';
import { ValidationError } from '../errors.js';
import type { ItemState, ItemUpdate } from '../store/types.js';
import { bucketConsume, bucketFits, bucketWaitNs, NS_PER_MS, type Step } from './gcra.js';
import { combine, giveBack, leasedItem } from './items.js';
import { type LeaseClaims, newLeaseId, signLease } from './lease.js';
import { amountOf, type Limit, parseUsage, type Usage } from './limits.js';
import { quotaConsume, quotaFits } from './quota.js';
import { type Engine, keyOf, nsToMs, toNs } from './state.js';
import { denial, remembered, statuses, violation } from './statuses.js';
import type { AcquireRequest, AcquireResult, ScopeCheck, Violation } from './types.js';

type ItemStep =
  | { readonly kind: 'deny'; readonly violations: Violation[] }
  | { readonly kind: 'write'; readonly update: ItemUpdate }
  | { readonly kind: 'none' };

type ConsumeOutcome =
  | { readonly kind: 'ok'; readonly state: ItemState }
  | { readonly kind: 'denied'; readonly violations: Violation[] }
  | { readonly kind: 'contended' };

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
  const signingKey = await engine.keys.current(); // before any write: a failure here changes nothing
  const nowMs = engine.clock();
  const nowNs = toNs(nowMs);
  const consume = { priority, maxWaitNs: BigInt(maxWaitMs) * NS_PER_MS };

  const tooLarge = checks.flatMap((check) =>
    check.limits
      .filter((limit) => {
        const amount = amountOf(usage, limit.metric);
        const at = priorityAt(check, priority);
        return limit.kind === 'bucket'
          ? !bucketFits(limit, amount, at)
          : !quotaFits(limit, amount, at);
      })
      .map((limit) => violation(check, limit, engine.stateOf(check.key), nowMs, usage, null)),
  );
  if (tooLarge.length > 0) {
    return {
      allowed: false,
      code: 'exceeds_capacity',
      retryAfterMs: null,
      violations: tooLarge,
      limits: remembered(engine, checks, nowMs),
    };
  }

  const first = checks.map((check) => {
    const seen = engine.seen.get(keyOf(check.key));
    const mayDeny = seen !== undefined && nowMs - seen.atMs <= engine.tuning.cacheDenyMaxAgeMs;
    return itemConsume(engine, check, seen?.state, nowMs, usage, { ...consume, mayDeny });
  });
  const deniedFromMemory = first.flatMap((step) => (step.kind === 'deny' ? step.violations : []));
  if (deniedFromMemory.length > 0) return denial(engine, checks, deniedFromMemory, nowMs);

  const settled = await Promise.allSettled(
    checks.map(async (check, i): Promise<ConsumeOutcome> => {
      let step = first[i] as ItemStep;
      for (let attempt = 0; attempt < engine.tuning.maxAttempts; attempt++) {
        if (step.kind === 'deny') return { kind: 'denied', violations: step.violations };
        if (step.kind === 'none') return { kind: 'ok', state: {} };
        const result = await engine.store.update(step.update);
        const state = result.item ?? {};
        engine.remember(check.key, state);
        if (result.ok) return { kind: 'ok', state };
        step = itemConsume(engine, check, state, nowMs, usage, { ...consume, mayDeny: true });
      }
      return { kind: 'contended' };
    }),
  );
  const outcomes = settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined));

  if (outcomes.every((o) => o?.kind === 'ok')) {
    const states = outcomes.map((o) => (o?.kind === 'ok' ? o.state : {}));
    const claims: LeaseClaims = {
      id: newLeaseId(),
      acquiredAtMs: nowMs,
      expiresAtMs: Math.floor(nowMs) + engine.tuning.leaseTtlMs,
      usage,
      items: checks.map((check, i) => leasedItem(check, states[i] ?? {}, nowMs)),
      ...(request.price ? { price: request.price } : {}),
    };
    let waitNs = 0n;
    checks.forEach((check, i) => {
      for (const limit of check.limits) {
        if (limit.kind !== 'bucket') continue;
        const wait = bucketWaitNs(limit, states[i] ?? {}, nowNs, priorityAt(check, priority));
        if (wait > waitNs) waitNs = wait;
      }
    });
    return {
      allowed: true,
      leaseId: signLease(claims, signingKey),
      waitMs: nsToMs(waitNs),
      limits: checks.flatMap((check, i) => statuses(check.scope, check.limits, states[i], nowMs)),
    };
  }

  // Give back what the admitting items took, then refuse (or fail, if a write threw).
  await Promise.all(
    outcomes.map((outcome, i) => {
      const check = checks[i];
      if (outcome?.kind !== 'ok' || !check) return undefined;
      return giveBack(engine, leasedItem(check, outcome.state, nowMs), usage, nowMs);
    }),
  );
  const thrown = settled.find((s) => s.status === 'rejected');
  if (thrown) throw thrown.reason;
  const violations = outcomes.flatMap((o) => (o?.kind === 'denied' ? o.violations : []));
  return denial(engine, checks, violations, nowMs);
}

function itemConsume(
  engine: Engine,
  check: ScopeCheck,
  state: ItemState | undefined,
  nowMs: number,
  usage: Usage,
  options: ConsumeOptions,
): ItemStep {
  const at = { ...options, priority: priorityAt(check, options.priority) };
  const steps = check.limits.map((limit) =>
    limitConsume(limit, state, nowMs, amountOf(usage, limit.metric), at),
  );
  const violations = check.limits.flatMap((limit, i) => {
    const step = steps[i];
    return step?.kind === 'deny'
      ? [violation(check, limit, state, nowMs, usage, nsToMs(step.retryAfterNs))]
      : [];
  });
  if (violations.length > 0) return { kind: 'deny', violations };
  const update = combine(engine, check.key, steps, state, nowMs);
  return update ? { kind: 'write', update } : { kind: 'none' };
}

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
