import { itemKeys, parseLimits } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { freshTable, manualClock } from '../support/table.js';

describe('acquire', () => {
  it('admits within the burst and refuses beyond it', async () => {
    const table = await freshTable('smoke');
    const clock = manualClock();
    const limiter = table.limiter({ clock: clock.now });
    const limits = parseLimits([{ name: 'rpm', metric: 'requests', limit: 3, per: 'second' }]);
    const checks = [{ scope: 'entity', key: itemKeys.entityBucket('k1', 'gpt-4o'), limits }];
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await limiter.acquire({ checks, usage: {} }));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false]);
    console.log(JSON.stringify(results[3]));
  });
});
