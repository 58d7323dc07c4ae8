/** available: what remains of every limit, and when a usage would fit; consumes nothing. */

import { type Price, withCost } from '../catalog/price.js';
import { shardKey } from '../store/schema.js';
import type { ItemKey, ItemState } from '../store/types.js';
import { beforeDeadline } from './budget.js';
import { limitConsume } from './consume.js';
import { validChecks } from './decision.js';
import { bucketFits } from './gcra.js';
import { amountOf, parseUsage, type Usage } from './limits.js';
import { quotaFits } from './quota.js';
import { countOf, shareOf } from './shards.js';
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
    for (const limit of check.limits) {
      if (limit.shadow) continue; // never refuses: no wait to report
      const amount = amountOf(usage, limit.metric);
      // A sharded scope admits when one of its shards does: the soonest shard's wait.
      let soonest: bigint | undefined;
      for (const { index, state } of scopes[i] ?? []) {
        const [share = limit] = shareOf([limit], index, countOf(state));
        const fit =
          share.kind === 'bucket' ? bucketFits(share, amount, 100) : quotaFits(share, amount, 100);
        if (!fit) continue;
        const step = limitConsume(share, state, nowMs, amount, {
          priority: 100,
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

/**
 * Reads a scope's items (one strongly consistent read each): its own, and every shard it has
 * (a shard names the count where it stands; deeper ones are read as they are found).
 */
async function readShards(
  engine: EngineState,
  base: ItemKey,
): Promise<{ readonly index: number; readonly state: ItemState }[]> {
  const own = (await engine.store.get(base)) ?? {};
  engine.remember(base, own);
  const found = [{ index: 0, state: own }];
  let read = 1;
  let count = Math.max(countOf(own), engine.shardCount(base));
  while (read < count) {
    const more = Array.from({ length: count - read }, (_, k) => read + k);
    const states = await Promise.all(more.map((index) => engine.store.get(shardKey(base, index))));
    read = count;
    states.forEach((state, k) => {
      if (state === undefined) return; // not born yet: its parent holds its share
      const index = more[k] as number;
      engine.remember(shardKey(base, index), state);
      found.push({ index, state });
      count = Math.max(count, countOf(state));
    });
  }
  return found;
}
