/**
 * Correctness under concurrency, checked against an in-memory model of the same limits.
 */
import { itemKeys, Limiter, parseLimits, type ScopeCheck } from '@sluice/core';
import { bucketAttributes } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { asClient, fileTable, manualClock } from '../support/table.js';

const table = fileTable('concurrency');
let run = 0;

const NS = 1_000_000n;

async function storedTat(check: ScopeCheck, name: string): Promise<bigint> {
  const item = await table.store.get(check.key);
  const x = item?.[bucketAttributes.tat(name)];
  return typeof x === 'bigint' ? x : 0n;
}

describe('64 concurrent clients on one bucket', () => {
  it('never admits more than the model allows and refuses nothing the model would admit', async () => {
    const LIMIT = 6_000; // tokens a minute: 100 a second
    const BURST = 20_000;
    const P = 60_000_000_000n; // ns
    const L = BigInt(LIMIT);
    const tau = BigInt(BURST) * P;

    const rounds = fc.array(
      fc.record({
        advanceMs: fc.integer({ min: 0, max: 30_000 }),
        sizes: fc.array(fc.integer({ min: 1, max: 1_500 }), { minLength: 64, maxLength: 64 }),
      }),
      { minLength: 6, maxLength: 10 },
    );

    await fc.assert(
      fc.asyncProperty(rounds, async (plan) => {
        run++;
        const clock = manualClock(Date.parse('2026-03-01T00:00:00Z'));
        const processes = Array.from(
          { length: 4 },
          () => new Limiter({ store: table.store, clock: clock.now }),
        );
        const check: ScopeCheck = {
          scope: 'entity',
          key: itemKeys.entityBucket(`hot-${run}`, 'gpt-4o'),
          limits: parseLimits([
            { name: 'tpm', metric: 'tokens', limit: LIMIT, per: 'minute', burst: BURST },
          ]),
        };
        let model = 0n; // TAT × L
        let decisions = 0;
        let contended = 0;

        for (const round of plan) {
          clock.advance(round.advanceMs);
          const nowX = BigInt(clock.now()) * NS * L;
          const results = await Promise.all(
            round.sizes.map((tokens, client) =>
              asClient(() =>
                (processes[client % 4] as Limiter).acquire({ checks: [check], usage: { tokens } }),
              ),
            ),
          );
          const admitted = round.sizes.filter((_, i) => results[i]?.allowed);
          model = (model > nowX ? model : nowX) + BigInt(admitted.reduce((a, b) => a + b, 0)) * P;

          // Nothing over-admitted: the admitted requests fit the model's bucket together.
          expect(model - nowX).toBeLessThanOrEqual(tau);
          // Every token accounted for: the stored TAT is the model's, to the unit.
          expect(await storedTat(check, 'tpm')).toBe(model);
          // Every refusal that names a violation was right: the request did not fit even at the
          // end of the round, when the bucket was at its fullest.
          const roomAtEnd = tau - (model - nowX);
          round.sizes.forEach((tokens, i) => {
            const result = results[i];
            if (!result || result.allowed) return;
            if (result.violations.length === 0) contended++;
            else expect(BigInt(tokens) * P).toBeGreaterThan(roomAtEnd);
          });
          decisions += round.sizes.length;
        }
        // Refusals that were only lost races on the branch guess stay within the retry slack.
        expect(contended).toBeLessThanOrEqual(Math.ceil(decisions * 0.01));
      }),
      { seed: 20261123, numRuns: 4, endOnFailure: true },
    );
  });
});

describe('conservation', () => {
  type Op =
    | { kind: 'acquire'; process: number; tokens: number }
    | { kind: 'adjust'; process: number; lease: number; tokens: number; copies: number }
    | { kind: 'release'; process: number; lease: number; tokens: number | null; copies: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant('acquire' as const),
      process: fc.nat(2),
      tokens: fc.integer({ min: 0, max: 4_000 }),
    }),
    fc.record({
      kind: fc.constant('adjust' as const),
      process: fc.nat(2),
      lease: fc.nat(),
      tokens: fc.integer({ min: 0, max: 8_000 }),
      copies: fc.integer({ min: 1, max: 4 }),
    }),
    fc.record({
      kind: fc.constant('release' as const),
      process: fc.nat(2),
      lease: fc.nat(),
      tokens: fc.option(fc.integer({ min: 0, max: 8_000 })),
      copies: fc.integer({ min: 1, max: 4 }),
    }),
  );

  it('accounts for every token once all leases settle, with debt, refunds, duplicates and retries', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 1, maxLength: 8 }), { minLength: 10, maxLength: 25 }),
        async (batches) => {
          run++;
          const clock = manualClock(Date.parse('2026-05-05T10:00:00Z')); // frozen: no refill
          const processes = Array.from(
            { length: 3 },
            () => new Limiter({ store: table.store, clock: clock.now }),
          );
          const limits = [
            { name: 'tpm', metric: 'tokens', limit: 60_000, per: 'minute', burst: 60_000 },
            { name: 'rpm', metric: 'requests', limit: 40, per: 'minute' },
            {
              name: 'daily',
              metric: 'tokens',
              limit: 80_000,
              window: 'day',
              timezone: 'Europe/Paris',
            },
          ];
          const checks: ScopeCheck[] = [
            {
              scope: 'entity',
              key: itemKeys.entityBucket(`c-${run}`, 'gpt-4o'),
              limits: parseLimits(limits),
            },
            {
              scope: 'resource',
              key: itemKeys.resourceBucket(`m-${run}`),
              limits: parseLimits(limits.slice(0, 2)),
            },
          ];
          const leases: { id: string; tokens: number; requests: number; settled: boolean }[] = [];

          for (const batch of batches) {
            const touched = new Set<number>();
            const work: Promise<unknown>[] = [];
            for (const o of batch) {
              const limiter = processes[o.process] as Limiter;
              if (o.kind === 'acquire') {
                work.push(
                  asClient(() => limiter.acquire({ checks, usage: { tokens: o.tokens } })).then(
                    (r) => {
                      if (r.allowed)
                        leases.push({
                          id: r.leaseId,
                          tokens: o.tokens,
                          requests: 1,
                          settled: false,
                        });
                    },
                  ),
                );
                continue;
              }
              if (leases.length === 0) continue;
              const index = o.lease % leases.length;
              const lease = leases[index];
              // One settlement per lease per batch (plus its duplicates), so the model knows the order.
              if (!lease || lease.settled || touched.has(index)) continue;
              touched.add(index);
              const copies = Array.from(
                { length: o.copies },
                (_, c) => processes[(o.process + c) % 3] as Limiter,
              );
              if (o.kind === 'adjust') {
                work.push(
                  ...copies.map((p) => asClient(() => p.adjust(lease.id, { tokens: o.tokens }))),
                );
                lease.tokens = o.tokens;
              } else {
                const usage = o.tokens === null ? undefined : { tokens: o.tokens };
                work.push(...copies.map((p) => asClient(() => p.release(lease.id, usage))));
                lease.tokens = o.tokens ?? 0;
                lease.requests = o.tokens === null ? 0 : 1;
                lease.settled = true;
              }
            }
            await Promise.all(work);
          }
          // Settle what is left, from a process chosen by position.
          await Promise.all(
            leases.map((lease, i) =>
              lease.settled
                ? undefined
                : asClient(() =>
                    (processes[i % 3] as Limiter).release(lease.id, { tokens: lease.tokens }),
                  ),
            ),
          );

          const tokens = leases.reduce((sum, l) => sum + l.tokens, 0);
          const requests = leases.reduce((sum, l) => sum + l.requests, 0);
          for (const check of checks) {
            const status = await (processes[0] as Limiter).available({ checks: [check] });
            const byName = Object.fromEntries(status.limits.map((l) => [l.name, l.remaining]));
            expect(byName.tpm).toBe(60_000 - tokens);
            expect(byName.rpm).toBe(40 - requests);
            if (check.scope === 'entity') expect(byName.daily).toBe(80_000 - tokens);
          }
        },
      ),
      { seed: 424242, numRuns: 6, endOnFailure: true },
    );
  });
});
