/**
 * Calls that wait to be combined behind a write in flight and whose callers give up: they take
 * no place in the next combined write, against DynamoDB Local.
 */
import { DeadlineExceededError, type ItemKey, Limiter } from '@sluice/core';
import type { ItemUpdate } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { check, remaining, tpm } from '../support/limits.js';

import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('combining-deadlines');

const same = (a: ItemKey, b: ItemKey) => a.pk === b.pk && a.sk === b.sk;

/** The real store, the first write to `key` held at a gate, every write to it recorded. */
function stallFirst(key: ItemKey) {
  const stall = holdPoint();
  const writes: ItemUpdate[] = [];
  const store = new HookedStore(table.store, async (update) => {
    if (!same(update.key, key)) return;
    writes.push(update);
    if (writes.length === 1) {
      await stall.arrive();
    }
  });
  return { store, stall, writes };
}

/** A while for calls under way to reach the store (or the writes they wait behind). */
const settled = () => new Promise((resolve) => setTimeout(resolve, 100));

describe('a call waiting to be combined behind a write in flight', () => {
  it('once its caller gave up, takes no place from the calls still waiting beside it', async () => {
    const clock = manualClock();
    const c = check([tpm(1_000)]);
    const { store, stall } = stallFirst(c.key);
    const limiter = new Limiter({ store, clock: clock.now });

    const first = limiter.acquire({ checks: [c], usage: { tokens: 500 } });
    await stall.reached;
    const deadline = new AbortController();
    const gaveUp = limiter.acquire({
      checks: [c],
      usage: { tokens: 500 },
      signal: deadline.signal,
    });
    await settled(); // it waits behind the write, first of its group
    const waiting = limiter.acquire({ checks: [c], usage: { tokens: 500 } });
    await settled();
    deadline.abort(); // its caller stops waiting before the write ahead of it has landed
    await expect(gaveUp).rejects.toBeInstanceOf(DeadlineExceededError);
    stall.release();

    expect((await first).allowed).toBe(true);
    expect((await waiting).allowed).toBe(true); // 500 + 500 fit 1,000
    await limiter.engine.idle();
    expect(await remaining(limiter, c)).toEqual([0]);
  });
});
