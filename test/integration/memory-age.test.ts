/**
 * What a process's memory of an item may answer for, against DynamoDB Local: a refusal from
 * memory only from a recent state (`cacheDenyMaxAgeMs`), whether the state was seen, derived
 * from a settlement, or left behind a write that failed; a combined group never takes more than
 * an item holds, whatever it remembers.
 */
import {
  itemKeys,
  Limiter,
  parseLimits,
  type ScopeCheck,
  StoreUnavailableError,
} from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { check, remaining, tpm } from '../support/limits.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('memory-age');

async function leaseOf(limiter: Limiter, c: ScopeCheck, tokens: number): Promise<string> {
  const result = await limiter.acquire({ checks: [c], usage: { tokens } });
  if (!result.allowed) throw new Error('expected admission');
  return result.leaseId;
}

describe('memory refreshed by a settlement', () => {
  it('a quota: a settlement does not make an old memory young enough to refuse from', async () => {
    const daily = { name: 'daily', metric: 'tokens', limit: 100, window: 'day' } as const;
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const truth = () => remaining(new Limiter({ store: table.store, clock: clock.now }), c);
    const c = check([daily]);
    const mine = await leaseOf(a, c, 50);
    const theirs = await leaseOf(b, c, 50);
    // A learns the quota is full (its write fails and returns the item: 100 used).
    expect((await a.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(false);
    // B cancels its lease: 50 used. A's memory (100 used) is now pessimistic, as documented
    // for 1 s (cacheDenyMaxAgeMs).
    await b.release(theirs);
    clock.advance(5_000);
    // A cancels its own lease: the table holds 0 used.
    await a.release(mine);
    expect(await truth()).toEqual([100]);

    // 5 s after A last saw the item, 60 tokens fit 100 remaining.
    const result = await a.acquire({ checks: [c], usage: { tokens: 60 } });

    expect(result.allowed).toBe(true);
  });

  it('a bucket: a settlement does not make an old memory young enough to refuse from', async () => {
    const clock = manualClock();
    const a = new Limiter({ store: table.store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check([tpm(60_000)]); // 1,000 tokens a second
    const truth = () => remaining(new Limiter({ store: table.store, clock: clock.now }), c);
    const mine = await leaseOf(a, c, 30_000);
    const theirs = await leaseOf(b, c, 30_000);
    expect((await a.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(false);
    await b.release(theirs);
    clock.advance(5_000);
    // A reports its lease used 30,001 tokens: one of debt, applied to A's memory of a full
    // bucket (5 s old), which comes out as new.
    await a.adjust(mine, { tokens: 30_001 });
    const left = await truth();
    expect(left[0]).toBeGreaterThan(30_000); // 60,000 − 30,001 + 5 s of refill

    const result = await a.acquire({ checks: [c], usage: { tokens: 20_000 } });

    expect(result.allowed).toBe(true);
  });
});

/**
 * The real store, whose next write (once `throttleNext` is called) is held at `hold`, then
 * throttled: it applies nothing and answers nothing of the item.
 */
function throttlingStore() {
  const hold = holdPoint();
  let armed = false;
  const store = new HookedStore(table.store, async () => {
    if (!armed) return;
    armed = false;
    await hold.arrive();
    throw new StoreUnavailableError('throttled', { notApplied: true });
  });
  return {
    store,
    hold,
    throttleNext: () => {
      armed = true;
    },
  };
}

describe('calls combined behind a write that failed', () => {
  it('are not refused from a memory older than cacheDenyMaxAgeMs', async () => {
    const daily = { name: 'daily', metric: 'tokens', limit: 100, window: 'day' } as const;
    const clock = manualClock();
    const { store, hold, throttleNext } = throttlingStore();
    const a = new Limiter({ store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check([daily]);
    const lease = await leaseOf(a, c, 100); // A remembers the quota full
    await b.release(lease); // and B empties it: 100 remain
    clock.advance(5_000); // A's memory is 5 s old: it may not refuse from it (1 s)

    throttleNext();
    const first = a.acquire({ checks: [c], usage: { tokens: 10 } });
    await hold.reached;
    // A second call on the item waits behind the first write, to be combined after it.
    const second = a.acquire({ checks: [c], usage: { tokens: 10 } });
    await new Promise((wake) => setTimeout(wake, 50));
    hold.release(); // the first write is throttled: it applied nothing, and shows nothing
    await expect(first).rejects.toBeInstanceOf(StoreUnavailableError);
    const result = await second.catch((error: unknown) => error);

    // 100 remain: the second call is admitted, not refused from A's memory of 100 used.
    expect(result).toMatchObject({ allowed: true });
  });
});

describe('a group combined from an old memory', () => {
  it('never takes more than the burst in one write', async () => {
    const clock = manualClock();
    const { store, hold, throttleNext } = throttlingStore();
    const a = new Limiter({ store, clock: clock.now });
    const b = new Limiter({ store: table.store, clock: clock.now });
    const c = check([tpm(1_000)]);
    const lease = await leaseOf(a, c, 1_000); // A remembers the bucket full
    await b.release(lease); // B gives it all back: 1,000 remain
    clock.advance(2_000); // A's memory is 2 s old

    throttleNext();
    const first = a.acquire({ checks: [c], usage: { tokens: 100 } });
    await hold.reached;
    const group = Array.from({ length: 5 }, () =>
      a.acquire({ checks: [c], usage: { tokens: 300 } }).catch((error: unknown) => error),
    );
    await new Promise((wake) => setTimeout(wake, 50));
    hold.release();
    await expect(first).rejects.toBeInstanceOf(StoreUnavailableError);
    const results = await Promise.all(group);
    const admitted = results.filter((r) => (r as { allowed?: boolean }).allowed === true).length;

    expect(admitted * 300).toBeLessThanOrEqual(1_000);
    expect(admitted).toBe(3);
  });
});

describe('a process that has not seen a scope grow', () => {
  it('refuses a request larger than a shard can hold as exceeds_capacity, not with a retry', async () => {
    const clock = manualClock();
    const c: ScopeCheck = {
      scope: 'resource',
      key: itemKeys.resourceBucket('zz-grown'),
      limits: parseLimits([
        { name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute', shards: 4 },
      ]),
    };
    const grower = new Limiter({ store: table.store, clock: clock.now });
    expect((await grower.acquire({ checks: [c], usage: { tokens: 1 } })).allowed).toBe(true);
    await grower.engine.growth(); // 4 shards of 250 tokens a minute, burst 250 each
    // The process that knows the shards refuses 400 tokens as never fitting.
    const known = await grower.acquire({ checks: [c], usage: { tokens: 400 } });
    expect(known).toMatchObject({ allowed: false, code: 'exceeds_capacity', retryAfterMs: null });

    const cold = new Limiter({ store: table.store, clock: clock.now });
    const result = await cold.acquire({ checks: [c], usage: { tokens: 400 } });

    expect(result).toMatchObject({ allowed: false, code: 'exceeds_capacity', retryAfterMs: null });
  });
});
