/**
 * Top-entities boards and the marks that count each stream record once, without DynamoDB: what a
 * board keeps when entities outgrow it, and the bounds its answers state, against an exact model.
 */
import {
  added,
  BOARD_BYTES,
  type Board,
  type BoardPart,
  boardOf,
  boardWrite,
  type Contribution,
  topOf,
} from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MARK_KEPT_MS,
  markAttribute,
  markValue,
  sortable,
  staleMarks,
} from '../../packages/core/src/usage/marks.js';

let sequence = 0;
/** One record's part for `entity`: usage by metric, refusals, a lease counted or not. */
function part(entity: string, usage: Record<string, number>, denied = 0): BoardPart {
  const contribution: Contribution = {
    kind: 'settle',
    id: `L${sequence}`,
    atMs: 0,
    context: { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] },
    metrics: new Map(Object.entries(usage).map(([m, n]) => [m, BigInt(n)])),
    leases: 1n,
    denied: denied ? new Map([['tpm', BigInt(denied)]]) : new Map(),
  };
  const position = { shard: 's1', sequence: String(++sequence), atMs: 1 };
  return { entity, contribution, position, mark: 'ws_x', sequence: sortable(position.sequence) };
}

/** A board after `parts`, one batch at a time, as written and read back. */
function through(batches: readonly (readonly BoardPart[])[]): Board {
  let item: Record<string, bigint | string> | undefined;
  for (const batch of batches) {
    const board = added(boardOf(item), batch);
    const write = boardWrite({ pk: 'p', sk: '#board' }, item, board, batch, 0, 0);
    item = Object.fromEntries(
      write.set.flatMap((a) => ('value' in a ? [[a.attr, a.value]] : [])),
    ) as Record<string, bigint | string>;
    expect(String(item.b).length).toBeLessThan(BOARD_BYTES + 2_000); // entries and the floor
  }
  return boardOf(item);
}

describe('a top-entities board', () => {
  it('is exact while its entities fit', () => {
    const board = through([
      [part('a', { tokens: 5, cost_micro_usd: 1 }), part('b', { tokens: 9 })],
      [part('a', { tokens: 6 }), part('c', {}, 3)],
    ]);
    expect(topOf([board], 'tokens', 10)).toEqual({
      entries: [
        expect.objectContaining({ entity: 'a', usage: { tokens: 11, cost_micro_usd: 1 } }),
        expect.objectContaining({ entity: 'b', usage: { tokens: 9 } }),
      ],
      exact: true,
      errorBound: 0,
    });
    expect(topOf([board], null, 10).entries.map((e) => [e.entity, e.denied])).toEqual([['c', 3]]);
  });

  it('keeps the leaders of every ranking when outgrown, a custom metric’s too', () => {
    const crowd = Array.from({ length: 400 }, (_, i) =>
      part(`tenant-${i}`, { tokens: 1_000 + i, cost_micro_usd: 1_000 + i }),
    );
    const board = through([crowd, [part('rare', { constructor: 7 })], [part('quiet', {}, 2)]]);
    expect(topOf([board], 'constructor', 1).entries.map((e) => e.entity)).toEqual(['rare']);
    expect(topOf([board], null, 1).entries.map((e) => e.entity)).toEqual(['quiet']);
    const byTokens = topOf([board], 'tokens', 3);
    expect(byTokens.entries.map((e) => e.entity)).toEqual([
      'tenant-399',
      'tenant-398',
      'tenant-397',
    ]);
    expect(byTokens.exact).toBe(true); // whoever was let go had less than the third
  });

  it('says it is not exact when an entity let go again and again adds up to the most', () => {
    // An early entity with 100 tokens, kept throughout; then each batch, a crowd of one-off
    // entities with 50 tokens, and one steady entity with 10: let go each time, it adds up to 300.
    const batches = Array.from({ length: 30 }, (_, b) => [
      ...(b === 0 ? [part('early', { tokens: 100 })] : []),
      part('steady', { tokens: 10 }),
      ...Array.from({ length: 120 }, (_, i) => part(`one-off-${b}-${i}`, { tokens: 50 })),
    ]);
    const top = topOf([through(batches)], 'tokens', 1);
    expect(top.exact).toBe(false);
    const [first] = top.entries;
    const shown = first?.usage.tokens ?? 0;
    if (first?.entity === 'steady') expect(300 - shown).toBeLessThanOrEqual(top.errorBound);
    else expect(300).toBeLessThanOrEqual(shown + top.errorBound); // steady left off: within the bound
  });

  it('states a bound that holds, against an exact count of every entity', () => {
    const metrics = ['tokens', 'cost_micro_usd', 'requests', 'custom_a'] as const;
    const batch = fc.array(
      fc.record({
        entity: fc.integer({ min: 0, max: 120 }),
        metric: fc.constantFrom(...metrics),
        amount: fc.integer({ min: 1, max: 1_000 }),
      }),
      { minLength: 1, maxLength: 60 },
    );
    fc.assert(
      fc.property(
        fc.array(batch, { minLength: 1, maxLength: 8 }),
        fc.constantFrom(...metrics),
        (batches, metric) => {
          const truth = new Map<string, number>();
          const parts = batches.map((b) =>
            b.map(({ entity, metric: m, amount }) => {
              const name = `tenant-with-a-long-name-${entity}`; // so that boards overflow
              if (m === metric) truth.set(name, (truth.get(name) ?? 0) + amount);
              return part(name, { [m]: amount });
            }),
          );
          const board = through(parts);
          const top = topOf([board], metric, 5);
          const bound = top.errorBound;
          for (const e of top.entries) {
            const real = truth.get(e.entity) ?? 0;
            const shown = e.usage[metric] ?? 0;
            expect(shown).toBeLessThanOrEqual(real);
            expect(real - shown).toBeLessThanOrEqual(bound);
          }
          const listed = new Set(top.entries.map((e) => e.entity));
          const last = top.entries.at(-1)?.usage[metric] ?? 0;
          for (const [entity, real] of truth) {
            // Anyone left off had no more than the last listed, give or take the bound.
            if (!listed.has(entity) && top.entries.length === 5)
              expect(real).toBeLessThanOrEqual(last + bound);
            if (!listed.has(entity) && top.entries.length < 5)
              expect(real).toBeLessThanOrEqual(bound);
          }
          if (top.exact) {
            const want = [...truth]
              .filter(([, n]) => n > 0)
              .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
              .slice(0, 5);
            expect(top.entries.map((e) => [e.entity, e.usage[metric]])).toEqual(want);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('the marks a usage row keeps', () => {
  it('are one per shard and kind of record, and order sequence numbers as numbers', () => {
    const names = new Set(
      (['acquire', 'settle', 'denied'] as const).flatMap((kind) =>
        ['shardId-00000001-aaaa', 'shardId-00000001-bbbb'].map((s) => markAttribute(kind, s)),
      ),
    );
    expect(names.size).toBe(6);
    expect(sortable('99') < sortable('100')).toBe(true);
    expect(() => sortable('12a')).toThrow();
  });

  it('are let go once older than the stream keeps records, never when their time is unknown', () => {
    const now = 10 * MARK_KEPT_MS;
    const old = markValue({ shard: 's', sequence: '5', atMs: now - MARK_KEPT_MS - 1 });
    const young = markValue({ shard: 's', sequence: '6', atMs: now - 1_000 });
    const unknown = markValue({ shard: 's', sequence: '7', atMs: 0 });
    expect(staleMarks({ wa_old: old, ws_young: young, wd_unknown: unknown, m_x: 5n }, now)).toEqual(
      ['wa_old'],
    );
  });
});
