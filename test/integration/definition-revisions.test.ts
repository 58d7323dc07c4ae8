/**
 * Which stored definition wins when processes hold different reads of the configuration: a plan
 * change takes effect within the cache time whatever another process read beside its older plan
 * (an entity's absence, an entity edited since); and a combined call whose caller gave up is
 * given back once.
 */
import { ConfigAdmin, DeadlineExceededError, Limiter, type Usage } from '@sluice/core';
import { CachedConfigSource, resolvePolicy } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore, holdPoint } from '../support/hooked-store.js';
import { check, tpm as perMinute, remaining } from '../support/limits.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('definition-revisions');

// 30-day periods: refill over a test's minutes is far below one token, so counts are exact.
const MONTHLY = 2_592_000;
const tpm = (limit: number) => ({
  limits: [{ name: 'tpm', metric: 'tokens', limit, per: MONTHLY }],
});

/** One process: its own configuration cache and engine memory, on the test's clock. */
function process(clock: () => number) {
  const policies = new CachedConfigSource({ store: table.store, ttlMs: 30_000, clock });
  const limiter = new Limiter({ store: table.store, clock });
  const acquire = async (entity: string, usage: Usage) => {
    const policy = await resolvePolicy(policies, { entity, resource: 'm', usage });
    return limiter.acquire({ checks: policy.checks, usage });
  };
  return { policies, limiter, acquire };
}

/** The tokens `processes` are admitted for `entity`, each asking 90 five times in turn. */
async function takenBy(processes: ReturnType<typeof process>[], entity: string) {
  let taken = 0;
  for (const p of processes) {
    for (let i = 0; i < 5; i++) {
      if ((await p.acquire(entity, { tokens: 90 })).allowed) taken += 90;
    }
  }
  return taken;
}

describe('an unregistered entity, revised as of the read that found no record', () => {
  it('a plan change takes effect within the cache time, although another process read the absence after it with the older plan still cached', async () => {
    const clock = manualClock();
    const t0 = clock.now();
    const at = (ms: number) => clock.set(t0 + ms);
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    await admin.put('plan', 'default', tpm(1_000), 'test');
    const a = process(clock.now);
    const b = process(clock.now);

    at(1_000);
    await b.acquire('warm-b', { tokens: 1 }); // B reads the default plan (cached until 31 s)
    at(5_000);
    await admin.put('plan', 'default', tpm(100), 'test'); // lowered to 100 at 5 s
    at(29_000);
    // A reads the absence and the new plan: the item holds 100.
    expect((await a.acquire('never-registered', { tokens: 10 })).allowed).toBe(true);
    at(30_000);
    // B's first call for this key reads its absence (30 s), with the plan of 1 s still cached.
    expect((await b.acquire('never-registered', { tokens: 10 })).allowed).toBe(true);

    // 45 s after the plan was lowered to 100 (the configuration cache is 30 s), both processes
    // have read the new plan. How many tokens does the key get?
    at(50_000);
    const admitted = 20 + (await takenBy([a, b], 'never-registered'));

    // Before a plan's revision was bounded by its read: 920 (B converted the item back to 1,000
    // at the revision of its absence read, 30 s, newer than A's 29 s; both then adopted it until
    // A read the absence again at 59 s).
    expect(admitted).toBeLessThanOrEqual(100);
  });
});

describe('a registered entity edited after its plan changed', () => {
  it('a plan change takes effect within the cache time, although another process read the edited entity with the older plan still cached', async () => {
    const clock = manualClock();
    const t0 = clock.now();
    const at = (ms: number) => clock.set(t0 + ms);
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    await admin.put('plan', 'default', tpm(1_000), 'test');
    const a = process(clock.now);
    const b = process(clock.now);

    at(1_000);
    await b.acquire('warm-b2', { tokens: 1 }); // B reads the default plan (cached until 31 s)
    at(5_000);
    await admin.put('plan', 'default', tpm(100), 'test'); // lowered to 100 at 5 s
    at(6_000);
    await admin.put('entity', 'edited-key', { description: 'a key' }, 'test'); // no limits of its own
    at(29_000);
    expect((await a.acquire('edited-key', { tokens: 10 })).allowed).toBe(true);
    at(30_000);
    expect((await b.acquire('edited-key', { tokens: 10 })).allowed).toBe(true);

    at(50_000); // 45 s after the change; both processes have read the new plan
    const admitted = 20 + (await takenBy([a, b], 'edited-key'));

    // Before a plan's revision was bounded by its read: 920, B's older plan taking the entity's
    // revision (6 s, after the change) and converting the item back, and A, at the same revision,
    // adopting the greater definition ("1000/…" > "100/…").
    expect(admitted).toBeLessThanOrEqual(100);
  });
});

describe('a combined call whose caller gives up while the group is written (withoutGone)', () => {
  it('is given back once: the item holds exactly what the admitted calls took', async () => {
    const clock = manualClock();
    const c = check([perMinute(1_000)]);
    const id = `${c.key.pk} ${c.key.sk}`;
    const holds = [holdPoint(), holdPoint()];
    let writes = 0;
    const store = new HookedStore(table.store, async (update) => {
      if (`${update.key.pk} ${update.key.sk}` !== id) return;
      const hold = holds[writes++];
      if (hold) await hold.arrive();
    });
    const limiter = new Limiter({ store, clock: clock.now });
    const aWhile = () => new Promise((resolve) => setTimeout(resolve, 30));

    const first = limiter.acquire({ checks: [c], usage: { tokens: 100 } });
    await holds[0]?.reached;
    const deadline = new AbortController();
    const gone = limiter.acquire({ checks: [c], usage: { tokens: 100 }, signal: deadline.signal });
    await aWhile();
    const others = [0, 1].map(() => limiter.acquire({ checks: [c], usage: { tokens: 100 } }));
    await aWhile();
    holds[0]?.release();
    await holds[1]?.reached; // the group's write, the first of it its call still waiting
    deadline.abort(); // gone while its group's write is in flight
    await expect(gone).rejects.toBeInstanceOf(DeadlineExceededError);
    holds[1]?.release();

    expect((await first).allowed).toBe(true);
    expect((await Promise.all(others)).map((r) => r.allowed)).toEqual([true, true]);
    await limiter.engine.idle();
    expect(await remaining(limiter, c)).toEqual([700]);
  });
});
