/** available: what remains of every limit, and when a usage would fit; consumes nothing. */

import { type Price, withCost } from '../catalog/price.js';
import { PRIORITY } from '../defaults.js';
import { beforeDeadline } from './budget.js';
import { limitConsume, priorityAt } from './consume.js';
import { validChecks } from './decision.js';
import { bucketFits } from './gcra.js';
import { amountOf, parseUsage, type Usage } from './limits.js';
import { quotaFits } from './quota.js';
import { countOf, readShards, shareOf } from './shards.js';
import { type EngineState, nsToMs } from './state.js';
import { scopeStatuses } from './statuses.js';
import type { AvailableResult, ScopeCheck } from './types.js';

/**
 * Reads every item (one strongly consistent read each) and says what remains, and when `usage`
 * would fit (0: now; null: never).
 */
export async function available(
  engine: EngineState,
  request: {
    checks: readonly ScopeCheck[];
    usage?: Usage;
    price?: Price | undefined;
    /** The request's deadline: once it aborts, `DeadlineExceededError`. */
    signal?: AbortSignal | undefined;
  },
): Promise<AvailableResult> {
  const given = parseUsage(request.usage ?? {}, 'usage');
  const usage = request.usage ? withCost(given, request.price) : given;
  const checks = validChecks(request.checks);
  const scopes = await beforeDeadline(
    Promise.all(checks.map((check) => readShards(engine, check.key))),
    request.signal,
  );
  const nowMs = engine.clock();
  let retryAfterNs = 0n;
  let never = false;
  checks.forEach((check, i) => {
    // As acquire judges it: a plan's priority is its share of the scopes it shares.
    const priority = priorityAt(check, PRIORITY.max);
    for (const limit of check.limits) {
      if (limit.shadow) continue; // never refuses: no wait to report
      const amount = amountOf(usage, limit.metric);
      // A sharded scope admits when one of its shards does: the soonest shard's wait.
      let soonest: bigint | undefined;
      for (const { index, state } of scopes[i] ?? []) {
        const [share = limit] = shareOf([limit], index, countOf(state));
        const fit =
          share.kind === 'bucket'
            ? bucketFits(share, amount, priority)
            : quotaFits(share, amount, priority);
        if (!fit) continue;
        const step = limitConsume(share, state, nowMs, amount, {
          priority,
          maxWaitNs: 0n,
          mayDeny: true,
        });
        const wait = step.kind === 'deny' ? step.retryAfterNs : 0n;
        if (soonest === undefined || wait < soonest) soonest = wait;
      }
      if (soonest === undefined) never = true;
      else if (soonest > retryAfterNs) retryAfterNs = soonest;
    }
  });
  return {
    limits: checks.flatMap((check) => scopeStatuses(engine, check, nowMs)),
    retryAfterMs: never ? null : nsToMs(retryAfterNs),
  };
}
