/** available: what remains of every limit, and when a usage would fit; consumes nothing. */

import { type Price, withCost } from '../catalog/price.js';
import { limitConsume, validChecks } from './acquire.js';
import { bucketFits } from './gcra.js';
import { amountOf, parseUsage, type Usage } from './limits.js';
import { quotaFits } from './quota.js';
import { type Engine, nsToMs } from './state.js';
import { statuses } from './statuses.js';
import type { AvailableResult, ScopeCheck } from './types.js';

/**
 * Reads every item (one strongly consistent read each) and says what remains, and when `usage`
 * would fit (0: now; null: never).
 */
export async function available(
  engine: Engine,
  request: { checks: readonly ScopeCheck[]; usage?: Usage; price?: Price | undefined },
): Promise<AvailableResult> {
  const given = parseUsage(request.usage ?? {}, 'usage');
  const usage = request.usage ? withCost(given, request.price) : given;
  const checks = validChecks(request.checks);
  const states = await Promise.all(checks.map((check) => engine.store.get(check.key)));
  const nowMs = engine.clock();
  let retryAfterNs = 0n;
  let never = false;
  checks.forEach((check, i) => {
    const state = states[i] ?? {};
    engine.remember(check.key, state);
    for (const limit of check.limits) {
      if (limit.shadow) continue; // never refuses: no wait to report
      const amount = amountOf(usage, limit.metric);
      if (
        limit.kind === 'bucket' ? !bucketFits(limit, amount, 100) : !quotaFits(limit, amount, 100)
      ) {
        never = true;
        continue;
      }
      const step = limitConsume(limit, state, nowMs, amount, {
        priority: 100,
        maxWaitNs: 0n,
        mayDeny: true,
      });
      if (step.kind === 'deny' && step.retryAfterNs > retryAfterNs)
        retryAfterNs = step.retryAfterNs;
    }
  });
  return {
    limits: checks.flatMap((check, i) =>
      statuses(check.scope, check.limits, states[i] ?? {}, nowMs),
    ),
    retryAfterMs: never ? null : nsToMs(retryAfterNs),
  };
}
