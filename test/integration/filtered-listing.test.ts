/**
 * A listing filtered in Sluice (the audit trail's and the budget alerts' `?entity=`) on DynamoDB
 * Local: pages hold only what the filter keeps, never more than asked, and continue exactly after
 * the last item read; a page reads a bounded number of items, so a long stretch of others gives a
 * short (even empty) page with a `next`, and following every `next` finds every kept item once.
 */
import { queryWhere } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { fileTable } from '../support/table.js';

const table = fileTable('filtered');
const PK = 'listing';

/** Writes `n` items `000000`…, kept where `kept(i)`: attribute `who` is `a` or `b`. */
async function write(n: number, kept: (i: number) => boolean) {
  for (let from = 0; from < n; from += 100)
    await Promise.all(
      Array.from({ length: Math.min(100, n - from) }, (_, j) =>
        table.store.update({
          key: { pk: PK, sk: String(from + j).padStart(6, '0') },
          set: [{ attr: 'who', value: kept(from + j) ? 'a' : 'b' }],
        }),
      ),
    );
}

describe('a filtered listing', () => {
  it('finds every kept item once across pages, reading a bounded stretch per page', async () => {
    // The bound at 200 here (1,000 in Sluice's routes): 450 items cross it twice.
    const scanAtMost = 200;
    const n = 450;
    const kept = (i: number) => i < 5 || i >= n - 4 || i === 240;
    await write(n, kept);
    const keep = (state: Record<string, unknown>) => state.who === 'a';

    const found: string[] = [];
    const sizes: number[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      const page = await queryWhere(table.store, PK, { limit: 3, after, scanAtMost }, keep);
      sizes.push(page.items.length);
      found.push(...page.items.map((i) => i.key.sk));
      if (page.next === undefined) break;
      after = page.next;
    }

    const want = Array.from({ length: n }, (_, i) => i)
      .filter(kept)
      .map((i) => String(i).padStart(6, '0'));
    expect(found).toEqual(want); // each once, in order
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3);
    // 000005 … 000239 and 000241 … are others: a page stopped short after its bounded stretch.
    expect(sizes.some((size) => size < 3)).toBe(true);
    expect(sizes.at(-1)).toBeGreaterThan(0);
  });

  it('ends without a `next` when the last item kept is the partition’s last', async () => {
    const pk = 'listing-end';
    for (const [i, who] of ['a', 'b', 'a'].entries())
      await table.store.update({ key: { pk, sk: `k${i}` }, set: [{ attr: 'who', value: who }] });
    const page = await queryWhere(table.store, pk, { limit: 2 }, (s) => s.who === 'a');
    expect(page.items.map((i) => i.key.sk)).toEqual(['k0', 'k2']);
    expect(page.next).toBeUndefined();
  });
});
