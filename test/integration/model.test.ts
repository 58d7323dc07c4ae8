/**
 * Generated sequences against an in-memory model, with everything the edges throw at the
 * engine: late refunds, reordered and duplicated adjusts, resets mid-lease, writes that throw,
 * and a limit changed while older processes still hold the old one.
 *
 * - Window: whatever happens, the leases acquired in any window [t1, t2] of one generation hold
 *   at most burst + rate × (t2 − t1). Debt is not an admission and a refund frees capacity for
 *   others at once, so each lease counts the lowest total it ever stood at (at most its estimate).
 * - Accounting (clock frozen, so nothing refills): after every lease settles, each limit's
 *   remaining is its limit less exactly what the model says its generation holds.
 */
import {
  ConfigAdmin,
  itemKeys,
  Limiter,
  parseLimits,
  type ScopeCheck,
  type Store,
  StoreUnavailableError,
} from '@sluice/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('model');
let run = 0;

/** The real store; `failNext` makes the next update of items under `pk` throw before it is sent. */
function faultyStore(inner: Store) {
  const store = new HookedStore(inner, async (update) => {
    if (store.failNext !== undefined && update.key.pk === store.failNext) {
      store.failNext = undefined;
      throw new StoreUnavailableError('DynamoDB unavailable: ThrottlingException', {
        notApplied: true,
      });
    }
  }) as HookedStore & { failNext?: string | undefined };
  return store;
}

type Op =
  | { kind: 'acquire'; process: number; tokens: number }
  | { kind: 'adjust'; process: number; lease: number; tokens: number; copies: number }
  | { kind: 'release'; process: number; lease: number; tokens: number | null; copies: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'reset' }
  | { kind: 'throw'; scope: 'entity' | 'resource' }
  | { kind: 'change' }
  | {
      kind: 'late';
      process: number;
      sizes: [number, number, number];
      waitMs: number;
      final: number | null;
    };

const settlement = (max: number) =>
  fc.oneof(
    fc.record({
      kind: fc.constant('adjust' as const),
      process: fc.nat(2),
      lease: fc.nat(),
      tokens: fc.integer({ min: 0, max }),
      copies: fc.integer({ min: 1, max: 3 }),
    }),
    fc.record({
      kind: fc.constant('release' as const),
      process: fc.nat(2),
      lease: fc.nat(),
      tokens: fc.option(fc.integer({ min: 0, max })),
      copies: fc.integer({ min: 1, max: 3 }),
    }),
  );

interface Lease {
  id: string;
  estimate: number;
  /** What adjusts reported (highest), if any. */
  reported: number | undefined;
  total: number;
  /** The lowest total it ever stood at: what it kept from others for good. */
  low: number;
  requests: number;
  settled: boolean;
  acquiredAtMs: number;
  generation: number;
}

/** Sends a settlement and its duplicates, plus a late copy of the previous adjust. */
function settle(processes: Limiter[], lease: Lease, o: Op & { kind: 'adjust' | 'release' }) {
  const copies = Array.from(
    { length: o.copies },
    (_, c) => processes[(o.process + c) % 3] as Limiter,
  );
  const work: Promise<unknown>[] = [];
  if (o.kind === 'adjust') {
    const stale = lease.reported;
    work.push(...copies.map((p) => p.adjust(lease.id, { tokens: o.tokens })));
    if (stale !== undefined) work.push((copies[0] as Limiter).adjust(lease.id, { tokens: stale }));
    lease.reported = Math.max(lease.reported ?? 0, o.tokens);
    lease.total = lease.reported;
    lease.low = Math.min(lease.low, lease.total);
  } else {
    const usage = o.tokens === null ? undefined : { tokens: o.tokens };
    work.push(...copies.map((p) => p.release(lease.id, usage)));
    lease.total = o.tokens ?? 0;
    lease.low = Math.min(lease.low, lease.total);
    lease.requests = o.tokens === null ? 0 : 1;
    lease.settled = true;
  }
  return work;
}

describe('the engine against a model', () => {
  it('never lets the leases of any window hold more than burst + rate × t, whatever comes late', async () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('acquire' as const),
          process: fc.nat(2),
          // Large requests and refills of a whole burst make late refunds bite.
          tokens: fc.oneof(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 60, max: 100 })),
        }),
      },
      { weight: 4, arbitrary: settlement(200) as fc.Arbitrary<Op> },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          ms: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 9_000, max: 12_000 })),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('throw' as const),
          scope: fc.constantFrom('entity' as const, 'resource' as const),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'change' as const }) },
      {
        // A lease settled after the bucket refilled, between two more acquires.
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('late' as const),
          process: fc.nat(2),
          sizes: fc.tuple(
            fc.integer({ min: 40, max: 100 }),
            fc.integer({ min: 40, max: 100 }),
            fc.integer({ min: 1, max: 100 }),
          ),
          waitMs: fc.integer({ min: 5_000, max: 12_000 }),
          final: fc.option(fc.integer({ min: 0, max: 100 })),
        }),
      },
    );
    // Two definitions of one limit: 10 a second (burst 100), then 15 a second (burst 150).
    const defs = [
      { limit: 100, burst: 100, revision: 1 },
      { limit: 150, burst: 150, revision: 2 },
    ];
    const RATE_PER_MS = 15 / 1_000; // the larger of the two: the bound holds for both
    const BURST = 150;

    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 8, maxLength: 20 }),
        async (batches) => {
          run++;
          const clock = manualClock(Date.parse('2026-06-01T08:00:00Z'));
          const store = faultyStore(table.store);
          // No denial from memory: every decision is the table's, so nothing hides an over-admission.
          const processes = Array.from(
            { length: 3 },
            () => new Limiter({ store, clock: clock.now, cacheDenyMaxAgeMs: 0 }),
          );
          const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
          const entity = `w-${run}`;
          const checksFor = (def: (typeof defs)[number]): ScopeCheck[] => {
            const limits = parseLimits([
              { name: 'tps', metric: 'tokens', limit: def.limit, per: 10, burst: def.burst },
            ]).map((l) => ({ ...l, revision: def.revision }));
            return [
              { scope: 'entity', key: itemKeys.entityBucket(entity, 'm'), limits },
              { scope: 'resource', key: itemKeys.resourceBucket(`w-${run}-m`), limits },
            ];
          };
          const heldBy = [0, 0, 0]; // which definition each process holds
          const leases: Lease[] = [];
          let generation = 0;
          /** Acquires `tokens` from one process; an admitted lease joins the model. */
          const take = async (process: number, tokens: number): Promise<Lease | undefined> => {
            const at = clock.now();
            const g = generation;
            const def = defs[heldBy[process] ?? 0] as (typeof defs)[number];
            try {
              const r = await (processes[process] as Limiter).acquire({
                checks: checksFor(def),
                usage: { tokens },
              });
              if (!r.allowed) return undefined;
              const lease: Lease = {
                id: r.leaseId,
                estimate: tokens,
                reported: undefined,
                total: tokens,
                low: tokens,
                requests: 1,
                settled: false,
                acquiredAtMs: at,
                generation: g,
              };
              leases.push(lease);
              return lease;
            } catch {
              return undefined; // a thrown write: nothing admitted
            }
          };

          for (const batch of batches) {
            const touched = new Set<number>();
            const work: Promise<unknown>[] = [];
            for (const o of batch) {
              if (o.kind === 'advance') {
                await Promise.all(work.splice(0)); // what is in flight happens before time moves
                clock.advance(o.ms);
              } else if (o.kind === 'change') heldBy[1] = heldBy[2] = 1;
              else if (o.kind === 'throw')
                store.failNext = o.scope === 'entity' ? `entity#${entity}` : `resource#w-${run}-m`;
              else if (o.kind === 'reset') {
                await Promise.all(work.splice(0));
                await admin.reset(entity, 'model');
                for (const p of processes) p.forget();
                generation++;
              } else if (o.kind === 'acquire') {
                work.push(take(o.process, o.tokens));
              } else if (o.kind === 'late') {
                await Promise.all(work.splice(0));
                const first = await take(o.process, o.sizes[0]);
                clock.advance(o.waitMs);
                await take((o.process + 1) % 3, o.sizes[1]);
                if (first && !first.settled) {
                  const release = {
                    kind: 'release' as const,
                    process: o.process,
                    lease: 0,
                    tokens: o.final,
                    copies: 1,
                  };
                  await Promise.all(settle(processes, first, release));
                }
                work.push(take((o.process + 2) % 3, o.sizes[2]));
              } else if (leases.length > 0) {
                const index = o.lease % leases.length;
                const lease = leases[index] as Lease;
                if (lease.settled || touched.has(index)) continue;
                touched.add(index);
                work.push(...settle(processes, lease, o).map((w) => w.catch(() => {})));
              }
            }
            await Promise.all(work);
          }
          await Promise.all(
            leases.map((l, i) =>
              l.settled
                ? undefined
                : (processes[i % 3] as Limiter).release(l.id, { tokens: l.total }),
            ),
          );

          // Entity windows restart at each reset; the resource never resets.
          for (const perGeneration of [true, false]) {
            const groups = new Map<number, Lease[]>();
            for (const l of leases) {
              const g = perGeneration ? l.generation : 0;
              groups.set(g, [...(groups.get(g) ?? []), l]);
            }
            for (const group of groups.values()) {
              const times = [...new Set(group.map((l) => l.acquiredAtMs))].sort((a, b) => a - b);
              for (const t1 of times) {
                for (const t2 of times.filter((t) => t >= t1)) {
                  const held = group
                    .filter((l) => l.acquiredAtMs >= t1 && l.acquiredAtMs <= t2)
                    .reduce((sum, l) => sum + l.low, 0);
                  expect(held, `window ${t1}..${t2}`).toBeLessThanOrEqual(
                    BURST + RATE_PER_MS * (t2 - t1),
                  );
                }
              }
            }
          }
        },
      ),
      { seed: 20261124, numRuns: 16, endOnFailure: true },
    );
  });

  it('accounts for every token and request in each generation once all leases settle', async () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('acquire' as const),
          process: fc.nat(2),
          tokens: fc.integer({ min: 0, max: 3_000 }),
        }),
      },
      { weight: 4, arbitrary: settlement(6_000) as fc.Arbitrary<Op> },
      { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('throw' as const),
          scope: fc.constantFrom('entity' as const, 'resource' as const),
        }),
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 8, maxLength: 20 }),
        async (batches) => {
          run++;
          const clock = manualClock(Date.parse('2026-06-02T08:00:00Z')); // frozen: no refill
          const store = faultyStore(table.store);
          const processes = Array.from(
            { length: 3 },
            () => new Limiter({ store, clock: clock.now }),
          );
          const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
          const entity = `a-${run}`;
          const limits = [
            { name: 'tpm', metric: 'tokens', limit: 50_000, per: 'minute' },
            { name: 'rpm', metric: 'requests', limit: 40, per: 'minute' },
            {
              name: 'daily',
              metric: 'tokens',
              limit: 80_000,
              window: 'day',
              timezone: 'Asia/Tokyo',
            },
          ];
          const checks: ScopeCheck[] = [
            {
              scope: 'entity',
              key: itemKeys.entityBucket(entity, 'm'),
              limits: parseLimits(limits),
            },
            {
              scope: 'resource',
              key: itemKeys.resourceBucket(`a-${run}-m`),
              limits: parseLimits(limits.slice(0, 2)),
            },
          ];
          const leases: Lease[] = [];
          let generation = 0;

          for (const batch of batches) {
            const touched = new Set<number>();
            const work: Promise<unknown>[] = [];
            for (const o of batch) {
              if (o.kind === 'advance' || o.kind === 'change' || o.kind === 'late') continue;
              if (o.kind === 'throw')
                store.failNext = o.scope === 'entity' ? `entity#${entity}` : `resource#a-${run}-m`;
              else if (o.kind === 'reset') {
                await Promise.all(work.splice(0));
                await admin.reset(entity, 'model');
                for (const p of processes) p.forget();
                generation++;
              } else if (o.kind === 'acquire') {
                const g = generation;
                work.push(
                  (processes[o.process] as Limiter)
                    .acquire({ checks, usage: { tokens: o.tokens } })
                    .then(
                      (r) => {
                        if (r.allowed)
                          leases.push({
                            id: r.leaseId,
                            estimate: o.tokens,
                            reported: undefined,
                            total: o.tokens,
                            low: o.tokens,
                            requests: 1,
                            settled: false,
                            acquiredAtMs: clock.now(),
                            generation: g,
                          });
                      },
                      () => {},
                    ),
                );
              } else if (leases.length > 0) {
                const index = o.lease % leases.length;
                const lease = leases[index] as Lease;
                if (lease.settled || touched.has(index)) continue;
                touched.add(index);
                // A lease of an earlier generation: what it gave back vanished with the reset, and
                // any debt lands in the current one. The model follows it by charging deltas below.
                const before = { total: lease.total, requests: lease.requests };
                work.push(...settle(processes, lease, o));
                const charged = lease as Lease & {
                  charged?: { tokens: number; requests: number }[];
                };
                charged.charged ??= [];
                charged.charged.push({
                  tokens: lease.total - before.total,
                  requests: lease.requests - before.requests,
                });
                (lease as Lease & { at?: number[] }).at = [
                  ...((lease as Lease & { at?: number[] }).at ?? []),
                  generation,
                ];
              }
            }
            await Promise.all(work);
          }
          const finalGeneration = generation;
          await Promise.all(
            leases.map((l, i) =>
              l.settled
                ? undefined
                : (processes[i % 3] as Limiter).release(l.id, { tokens: l.total }),
            ),
          );

          // What the current generation of the entity holds, and what the resource holds.
          let entityTokens = 0;
          let entityRequests = 0;
          let resourceTokens = 0;
          let resourceRequests = 0;
          for (const l of leases) {
            const deltas =
              (l as Lease & { charged?: { tokens: number; requests: number }[] }).charged ?? [];
            const gens = (l as Lease & { at?: number[] }).at ?? [];
            resourceTokens += l.total;
            resourceRequests += l.requests;
            // The entity: the acquire counts if the lease is of this generation; each later delta
            // counts if it was a debt (into the then-current generation) or a refund into the
            // lease's own generation, when that generation is the current one.
            let tokens = l.generation === finalGeneration ? l.estimate : 0;
            let requests = l.generation === finalGeneration ? 1 : 0;
            deltas.forEach((d, i) => {
              const at = gens[i] ?? finalGeneration;
              if (at !== finalGeneration) return;
              if (d.tokens > 0) tokens += d.tokens;
              else if (l.generation === finalGeneration) tokens += d.tokens;
              if (d.requests < 0 && l.generation === finalGeneration) requests += d.requests;
            });
            entityTokens += tokens;
            entityRequests += requests;
          }
          const status = async (check: ScopeCheck) =>
            Object.fromEntries(
              (await (processes[0] as Limiter).available({ checks: [check] })).limits.map((l) => [
                l.name,
                l.remaining,
              ]),
            );
          const [own, shared] = [
            await status(checks[0] as ScopeCheck),
            await status(checks[1] as ScopeCheck),
          ];

          expect(shared).toEqual({ tpm: 50_000 - resourceTokens, rpm: 40 - resourceRequests });
          expect(own).toEqual({
            tpm: 50_000 - entityTokens,
            rpm: 40 - entityRequests,
            daily: 80_000 - entityTokens,
          });
        },
      ),
      { seed: 20261125, numRuns: 10, endOnFailure: true },
    );
  });
});
