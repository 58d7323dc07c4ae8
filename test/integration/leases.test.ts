import {
  LeaseNotFoundError,
  LeaseSettledError,
  Limiter,
  parseLimits,
  type ScopeCheck,
} from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { check, remaining, tpm } from '../support/limits.js';
import { countedLimiter, fileTable, freshTable, manualClock } from '../support/table.js';

const table = fileTable('leases');

async function leaseOf(limiter: Limiter, c: ScopeCheck, tokens: number): Promise<string> {
  const result = await limiter.acquire({ checks: [c], usage: { tokens } });
  if (!result.allowed) throw new Error('expected admission');
  return result.leaseId;
}

describe('adjust', () => {
  it('charges the difference when the call used more than estimated, into debt', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 900);

    const adjusted = await limiter.adjust(lease, { tokens: 1_300 });

    expect(adjusted.limits[0]?.remaining).toBe(-300);
    expect(await remaining(limiter, c)).toEqual([-300]);
  });

  it('makes later callers wait out a debt', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(600)]); // 10 a second
    const lease = await leaseOf(limiter, c, 600);
    await limiter.adjust(lease, { tokens: 700 });

    const next = await limiter.acquire({ checks: [c], usage: { tokens: 10 } });

    expect(next).toMatchObject({ allowed: false, retryAfterMs: 11_000 });
  });

  it('gives back what the call did not use', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 900);

    await limiter.adjust(lease, { tokens: 250 });

    expect(await remaining(limiter, c)).toEqual([750]);
  });

  it('takes running totals while a stream goes on', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 100);

    for (const tokens of [120, 180, 260]) await limiter.adjust(lease, { tokens });

    expect(await remaining(limiter, c)).toEqual([740]);
  });

  it('derives tokens from the reported split and keeps left-out metrics at the estimate', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([
      tpm(10_000),
      { name: 'otpm', metric: 'output_tokens', limit: 10_000, per: 'minute' },
    ]);
    const result = await limiter.acquire({
      checks: [c],
      usage: { input_tokens: 1_000, output_tokens: 500 },
    });
    if (!result.allowed) throw new Error('expected admission');

    const adjusted = await limiter.adjust(result.leaseId, { output_tokens: 800 });

    expect(adjusted.usage).toMatchObject({
      input_tokens: 1_000,
      output_tokens: 800,
      tokens: 1_800,
    });
    expect(await remaining(limiter, c)).toEqual([8_200, 9_200]);
  });

  it('applies a duplicate sent five times at once exactly once', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 100);

    const answers = await Promise.all(
      Array.from({ length: 5 }, () => limiter.adjust(lease, { tokens: 400 })),
    );

    expect(answers.map((a) => a.usage.tokens)).toEqual([400, 400, 400, 400, 400]);
    expect(await remaining(limiter, c)).toEqual([600]);
  });

  it('applies a duplicate sent by five processes at once exactly once', async () => {
    const clock = manualClock();
    const processes = Array.from(
      { length: 5 },
      () => new Limiter({ store: table.store, clock: clock.now }),
    );
    const c = check();
    const lease = await leaseOf(processes[0] as Limiter, c, 100);

    await Promise.all(processes.map((p) => p.adjust(lease, { tokens: 400 })));

    expect(await remaining(processes[0] as Limiter, c)).toEqual([600]);
  });

  it('costs one transaction of the lease item and the bucket', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 100);
    const before = { ...store.counts };

    await limiter.adjust(lease, { tokens: 150 });

    expect(store.counts.transact - before.transact).toBe(1);
    expect(store.counts.update - before.update).toBe(0);
    expect(store.counts.get - before.get).toBe(0);
  });
});

describe('release', () => {
  it('without usage gives back the whole reservation, request included', async () => {
    const { limiter } = countedLimiter(table);
    const c = check([tpm(1_000), { name: 'rpm', metric: 'requests', limit: 10, per: 'minute' }]);
    const lease = await leaseOf(limiter, c, 900);

    await limiter.release(lease);

    expect(await remaining(limiter, c)).toEqual([1_000, 10]);
  });

  it('answers a repeated release as the first did and changes nothing', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 500);
    const first = await limiter.release(lease, { tokens: 300 });

    const again = await Promise.all(
      Array.from({ length: 5 }, () => limiter.release(lease, { tokens: 300 })),
    );

    expect(again.map((a) => [a.settled, a.usage])).toEqual(
      Array.from({ length: 5 }, () => [first.settled, first.usage]),
    );
    expect(await remaining(limiter, c)).toEqual([700]);
  });

  it('refuses a different release or an adjust once settled', async () => {
    const { limiter } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(limiter, c, 500);
    await limiter.release(lease, { tokens: 300 });

    await expect(limiter.release(lease, { tokens: 301 })).rejects.toBeInstanceOf(LeaseSettledError);
    await expect(limiter.release(lease)).rejects.toBeInstanceOf(LeaseSettledError);
    await expect(limiter.adjust(lease, { tokens: 300 })).rejects.toBeInstanceOf(LeaseSettledError);
    expect(await remaining(limiter, c)).toEqual([700]);
  });

  it('recognizes a settled lease in a process that never saw it', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check();
    const lease = await leaseOf(a, c, 500);
    await a.release(lease, { tokens: 200 });

    const same = await b.release(lease, { tokens: 200 });

    expect(same.settled).toBe(true);
    await expect(b.adjust(lease, { tokens: 1 })).rejects.toBeInstanceOf(LeaseSettledError);
    expect(await remaining(b, c)).toEqual([800]);
  });

  it('never answers a repeated adjust from a memory older than a release in another process', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check();
    const lease = await leaseOf(a, c, 500);
    await a.adjust(lease, { tokens: 300 });
    await b.release(lease, { tokens: 400 });

    await expect(a.adjust(lease, { tokens: 300 })).rejects.toBeInstanceOf(LeaseSettledError);
    expect(await remaining(a, c)).toEqual([600]);
  });

  it('answers a repeated adjust as the first did when the table agrees with memory', async () => {
    const { limiter: a, store } = countedLimiter(table);
    const c = check();
    const lease = await leaseOf(a, c, 500);
    await a.adjust(lease, { tokens: 300 });
    const writes = store.counts.transact + store.counts.update;

    const again = await a.adjust(lease, { tokens: 300 });

    expect(again).toMatchObject({ settled: false, usage: { tokens: 300 } });
    expect(store.counts.transact + store.counts.update).toBe(writes);
  });
});

describe('lease ids', () => {
  it('refuses an altered lease id as not found', async () => {
    const { limiter } = countedLimiter(table);
    const lease = await leaseOf(limiter, check(), 500);
    const [body, mac] = lease.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as {
      u: { tokens: number };
    };
    claims.u.tokens = 50_000; // claim it took more, to be refunded more
    const forged = `${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${mac}`;

    await expect(limiter.release(forged)).rejects.toBeInstanceOf(LeaseNotFoundError);
    await expect(limiter.adjust('not-a-lease', { tokens: 1 })).rejects.toBeInstanceOf(
      LeaseNotFoundError,
    );
  });

  it('refuses an expired lease and leaves its estimate charged', async () => {
    const { limiter, clock } = countedLimiter(table);
    const c = check([{ name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' }]);
    const lease = await leaseOf(limiter, c, 500);
    clock.advance(3_600_001);

    await expect(limiter.release(lease)).rejects.toBeInstanceOf(LeaseNotFoundError);
    expect(await remaining(limiter, c)).toEqual([500]);
  });

  it('measures a list of limits again once it has grown, and refuses a lease too long to settle', async () => {
    const { limiter, store } = countedLimiter(table);
    const c = check();
    await leaseOf(limiter, c, 10); // measured at one limit
    // 25 lists of 16 (the most one list may hold): 400 limits, far more than a lease carries.
    const many = Array.from({ length: 25 }, (_, list) =>
      parseLimits(
        Array.from({ length: 16 }, (_, i) => ({
          ...tpm(1_000),
          name: `tpm_${list}_${i}_${'x'.repeat(40)}`,
        })),
      ),
    ).flat();
    (c.limits as unknown[]).push(...many); // a caller that grows a list it passed before
    const writes = store.writes;

    const refused = limiter.acquire({ checks: [c], usage: { tokens: 10 } });

    await expect(refused).rejects.toMatchObject({ code: 'invalid_request', field: 'limits' });
    expect(store.writes).toBe(writes);
  });

  it('settles in any process: the signing key is shared through the table', async () => {
    const fresh = await freshTable('leases-key');
    const processes = Array.from({ length: 4 }, () => fresh.limiter());
    const c = check();
    // All four start at once on an empty table and race to create the key.
    const leases = await Promise.all(processes.map((p) => leaseOf(p, c, 10)));

    for (const [i, lease] of leases.entries()) {
      const other = processes[(i + 1) % processes.length] as Limiter;
      await expect(other.release(lease)).resolves.toMatchObject({ settled: true });
    }
  });
});

describe('quota leases', () => {
  const daily = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' };

  it('charges debt into the current window after midnight and skips a refund to a past one', async () => {
    const { limiter, clock } = countedLimiter(table);
    clock.set(Date.parse('2026-06-01T23:59:00Z'));
    const c = check([daily]);
    const a = await leaseOf(limiter, c, 100);
    const b = await leaseOf(limiter, c, 100);
    clock.set(Date.parse('2026-06-02T00:01:00Z'));

    await limiter.release(a, { tokens: 300 }); // 200 over: charged to June 2
    await limiter.release(b, { tokens: 0 }); // June 1 is over: nothing to give back

    expect(await remaining(limiter, c)).toEqual([800]);
  });
});
