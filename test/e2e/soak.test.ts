/**
 * The soak (`npm run soak`, 180 seconds) at 60: the same phases, each a share of the run.
 * DynamoDB Local paused, killed and restarted, throttling, failing and dropping answers behind a
 * proxy, one of two servers killed mid-request, limits, budgets and the signing key changed while
 * clients call. Every check of its table must pass, and no process it started may outlive it.
 */
import { describe, expect, it } from 'vitest';
import { runSoak } from '../soak/harness.js';
import { childrenAlive } from '../soak/processes.js';
import { renderReport } from '../soak/report.js';

describe('sluice under faults', () => {
  it('keeps every check of the soak for 60 seconds', { timeout: 300_000 }, async () => {
    // Clients wait 4 s (the soak's own default is 1.5 s): the other test files share the
    // machine, and a calm phase must stay calm on a busy one. Pauses and kills outlast it.
    const report = await runSoak({ seconds: 60, timeoutMs: 4_000 });

    const failed = report.rows
      .filter((row) => !row.pass)
      .map((row) => `${row.name}: ${row.observed}`);
    expect(childrenAlive()).toEqual([]);
    expect(failed, renderReport(report)).toEqual([]);
  });
});
