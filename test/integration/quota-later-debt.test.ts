/**
 * A quota's debt that an adjust charged into a window after the lease's own (the call ran past
 * midnight) is taken back from that window by a lower report, by whichever process settles.
 */
import { Limiter, type ScopeCheck } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { check, remaining } from '../support/limits.js';
import { countedLimiter, fileTable } from '../support/table.js';

const table = fileTable('later-debt');

async function leaseOf(limiter: Limiter, c: ScopeCheck, tokens: number): Promise<string> {
  const result = await limiter.acquire({ checks: [c], usage: { tokens } });
  if (!result.allowed) throw new Error('expected admission');
  return result.leaseId;
}

describe('a quota debt in a later window', () => {
  it('a refund takes back debt the lease charged into the window after its own', async () => {
    const daily = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' } as const;
    const { clock, limiter } = countedLimiter(table, Date.parse('2026-01-15T23:59:00Z'));
    const c = check([daily]);
    const lease = await leaseOf(limiter, c, 100);
    clock.set(Date.parse('2026-01-16T00:01:00Z'));
    // The stream ran past its estimate after midnight: 200 of debt, charged to the new day.
    await limiter.adjust(lease, { tokens: 300 });
    expect(await remaining(limiter, c)).toEqual([800]);

    // The provider's final count is 50, settled by another process: the 100 of the day before
    // already holds it.
    const other = new Limiter({ store: table.store, clock: clock.now });
    await other.adjust(lease, { tokens: 350 }); // 50 more of debt, in the same day
    expect(await remaining(other, c)).toEqual([750]);
    await other.release(lease, { tokens: 50 });

    expect(await remaining(limiter, c)).toEqual([1_000]);
  });
});
