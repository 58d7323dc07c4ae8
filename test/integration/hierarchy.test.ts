/**
 * Stored configuration under concurrency: keys under projects under an org, a provider-wide
 * limit and a price, resolved as acquire resolves it, against an in-memory model. Nothing is
 * over-admitted at any scope, and once every lease settles each scope holds exactly the
 * requests, tokens and micro-dollars of the leases that touched it.
 */
import { ConfigAdmin, Limiter, type Usage } from '@sluice/core';
import { CachedConfigSource, resolvePolicy } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('hierarchy');
let run = 0;

const MONTH = 2_592_000;
const KEYS = ['k1', 'k2', 'k3', 'k4'] as const;
const PROJECT_OF: Record<string, string> = { k1: 'p1', k2: 'p1', k3: 'p2', k4: 'p2' };
const CAP = { key: 3_000, project: 5_000, org: 8_000, provider: 7_000 } as const;

/** $0.15 in, $0.60 out per million tokens: micro-USD = ceil((15 in + 60 out) / 100). */
const cost = (input: number, output: number) =>
  Number((BigInt(input) * 15n + BigInt(output) * 60n + 99n) / 100n);

async function configure(admin: ConfigAdmin, tag: string) {
  const tokens = (name: string, limit: number) => ({
    name,
    metric: 'tokens',
    limit,
    per: MONTH,
  });
  await admin.put(
    'plan',
    `plan-${tag}`,
    {
      limits: [
        tokens('tpm', CAP.key),
        { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000, window: 'month' },
      ],
    },
    'test',
  );
  await admin.put('entity', `org-${tag}`, { limits: [tokens('org_tpm', CAP.org)] }, 'test');
  for (const p of ['p1', 'p2']) {
    await admin.put(
      'entity',
      `${p}-${tag}`,
      {
        parent: `org-${tag}`,
        limits: [
          tokens('project_tpm', CAP.project),
          { name: 'project_rpm', metric: 'requests', limit: 1_000, per: MONTH },
        ],
      },
      'test',
    );
  }
  for (const k of KEYS) {
    await admin.put(
      'entity',
      `${k}-${tag}`,
      { plan: `plan-${tag}`, parent: `${PROJECT_OF[k]}-${tag}` },
      'test',
    );
  }
  await admin.put(
    'resource',
    `model-${tag}`,
    {
      price: { input: '0.15', output: '0.60' },
      limits: [tokens('provider_tpm', CAP.provider)],
    },
    'test',
  );
}

interface Lease {
  id: string;
  key: string;
  usage: { input: number; output: number };
  requests: number;
}

describe('keys → projects → org, with a provider limit and a price', () => {
  const acquireOp = fc.record({
    key: fc.constantFrom(...KEYS),
    process: fc.nat(2),
    input: fc.integer({ min: 0, max: 900 }),
    output: fc.integer({ min: 0, max: 300 }),
  });
  const settleOp = fc.record({
    process: fc.nat(2),
    lease: fc.nat(),
    input: fc.integer({ min: 0, max: 1_500 }),
    output: fc.integer({ min: 0, max: 800 }),
    cancel: fc.boolean(),
    copies: fc.integer({ min: 1, max: 3 }),
  });

  it('never over-admits at any scope and accounts for every token and micro-dollar', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(acquireOp, { minLength: 24, maxLength: 48 }),
        fc.array(settleOp, { minLength: 10, maxLength: 40 }),
        async (acquires, settles) => {
          const tag = `r${++run}`;
          const clock = manualClock(Date.parse('2026-06-10T08:00:00Z')); // frozen: no refill
          await configure(new ConfigAdmin({ store: table.store }), tag);
          const processes = Array.from({ length: 3 }, () => ({
            limiter: table.limiter({ clock: clock.now }),
            policies: new CachedConfigSource({ store: table.store, ttlMs: 60_000 }),
          }));
          const acquire = async (p: (typeof processes)[number], key: string, usage: Usage) => {
            const policy = await resolvePolicy(p.policies, {
              entity: `${key}-${tag}`,
              resource: `model-${tag}`,
              usage,
            });
            return asClient(() =>
              p.limiter.acquire({
                checks: policy.checks,
                usage,
                ...(policy.price ? { price: policy.price } : {}),
              }),
            );
          };

          // Every acquire at once, from three processes.
          const leases: Lease[] = [];
          await Promise.all(
            acquires.map(async (a) => {
              const usage = { input_tokens: a.input, output_tokens: a.output };
              const r = await acquire(
                processes[a.process] as (typeof processes)[number],
                a.key,
                usage,
              );
              if (r.allowed) {
                leases.push({
                  id: r.leaseId,
                  key: a.key,
                  usage: { input: a.input, output: a.output },
                  requests: 1,
                });
              }
            }),
          );
          const admitted = (scope: (l: Lease) => boolean) =>
            leases.filter(scope).reduce((sum, l) => sum + l.usage.input + l.usage.output, 0);
          for (const k of KEYS) expect(admitted((l) => l.key === k)).toBeLessThanOrEqual(CAP.key);
          for (const p of ['p1', 'p2'])
            expect(admitted((l) => PROJECT_OF[l.key] === p)).toBeLessThanOrEqual(CAP.project);
          expect(admitted(() => true)).toBeLessThanOrEqual(Math.min(CAP.org, CAP.provider));

          // Settle (adjust or release, with duplicates), then close what is left.
          const touched = new Set<number>();
          await Promise.all(
            settles.flatMap((s) => {
              if (leases.length === 0) return [];
              const index = s.lease % leases.length;
              const lease = leases[index] as Lease;
              if (touched.has(index)) return [];
              touched.add(index);
              const usage = { input_tokens: s.input, output_tokens: s.output };
              lease.usage = s.cancel
                ? { input: 0, output: 0 }
                : { input: s.input, output: s.output };
              if (s.cancel) lease.requests = 0;
              return Array.from({ length: s.copies }, (_, c) => {
                const { limiter } = processes[(s.process + c) % 3] as (typeof processes)[number];
                return asClient(() =>
                  s.cancel ? limiter.release(lease.id) : limiter.release(lease.id, usage),
                );
              });
            }),
          );

          // The model: what each scope must hold now.
          const sum = (of: (l: Lease) => boolean, f: (l: Lease) => number) =>
            leases.filter(of).reduce((total, l) => total + f(l), 0);
          const tokens = (l: Lease) => l.usage.input + l.usage.output;
          const usd = (l: Lease) => cost(l.usage.input, l.usage.output);
          const reader = processes[0] as (typeof processes)[number];
          const remaining = async (entity: string) => {
            const policy = await resolvePolicy(reader.policies, {
              entity: `${entity}-${tag}`,
              resource: `model-${tag}`,
              usage: {},
            });
            const status = await reader.limiter.available({ checks: policy.checks });
            return Object.fromEntries(
              status.limits.map((l) => [`${l.scope}/${l.name}`, l.remaining]),
            );
          };
          for (const k of KEYS) {
            const seen = await remaining(k);
            const p = PROJECT_OF[k] as string;
            expect(seen['entity/tpm']).toBe(CAP.key - sum((l) => l.key === k, tokens));
            expect(seen['entity/usd']).toBe(1_000_000 - sum((l) => l.key === k, usd));
            expect(seen[`parent:${p}-${tag}/project_tpm`]).toBe(
              CAP.project - sum((l) => PROJECT_OF[l.key] === p, tokens),
            );
            expect(seen[`parent:${p}-${tag}/project_rpm`]).toBe(
              1_000 -
                sum(
                  (l) => PROJECT_OF[l.key] === p,
                  (l) => l.requests,
                ),
            );
            expect(seen[`parent:org-${tag}/org_tpm`]).toBe(CAP.org - sum(() => true, tokens));
            expect(seen['resource/provider_tpm']).toBe(CAP.provider - sum(() => true, tokens));
          }
        },
      ),
      { seed: 6_061_006, numRuns: 5, endOnFailure: true },
    );
  });
});

describe('the configuration cache', () => {
  it('keeps a warm acquire at one conditional write per scope item and no read', async () => {
    const tag = `cache${++run}`;
    await configure(new ConfigAdmin({ store: table.store }), tag);
    const store = new CountingStore(table.store);
    const policies = new CachedConfigSource({ store, ttlMs: 60_000 });
    const limiter = new Limiter({ store });
    const usage = { input_tokens: 10, output_tokens: 10 };
    const once = async () => {
      const policy = await resolvePolicy(policies, {
        entity: `k1-${tag}`,
        resource: `model-${tag}`,
        usage,
      });
      const result = await limiter.acquire({ checks: policy.checks, usage, price: policy.price });
      return { scopes: policy.checks.length, allowed: result.allowed };
    };
    await once(); // reads the configuration and the signing key
    store.counts = { update: 0, transact: 0, get: 0 };

    const warm = await once();

    expect(warm).toEqual({ scopes: 4, allowed: true }); // key, project, org, resource
    expect(store.counts).toEqual({ update: 4, transact: 0, get: 0 });
  });
});
