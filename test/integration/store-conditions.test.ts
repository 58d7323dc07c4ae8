/**
 * Conditions as DynamoDB takes them: generated condition trees (groups of none, one or many,
 * groups within groups of the same kind or the other, comparisons of numbers and strings with
 * values of either type) on generated items, sent to DynamoDB Local. Every one is accepted (none
 * is refused as malformed, as `((a OR b))` is), and each holds exactly when a model of it does.
 */
import type { Condition, ItemState } from '@sluice/core';

type Value = bigint | string;

import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { freshTable, type TestTable } from '../support/table.js';

let table: TestTable;
beforeAll(async () => {
  table = await freshTable('conditions');
});

const ATTRS = ['a', 'b', 'c'] as const;
const value: fc.Arbitrary<Value> = fc.oneof(
  fc.bigInt({ min: -3n, max: 3n }),
  fc.constantFrom('x', 'y'),
);
const leaf: fc.Arbitrary<Condition> = fc.oneof(
  fc.record({ absent: fc.constantFrom(...ATTRS) }),
  fc.record({ exists: fc.constantFrom(...ATTRS) }),
  fc.record({
    attr: fc.constantFrom(...ATTRS),
    op: fc.constantFrom('=', '<>', '<', '<=', '>=') as fc.Arbitrary<'=' | '<>' | '<' | '<=' | '>='>,
    value,
  }),
);
const { condition } = fc.letrec<{ condition: Condition }>((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.record({ and: fc.array(tie('condition'), { maxLength: 3 }) }),
    fc.record({ or: fc.array(tie('condition'), { maxLength: 3 }) }),
  ),
}));
/** Which of the attributes the item holds, and their values. */
const item = fc.record({ a: value, b: value, c: value }, { requiredKeys: [] }) as fc.Arbitrary<
  Partial<Record<(typeof ATTRS)[number], Value>>
>;

/** What DynamoDB's condition means. */
function holds(c: Condition, state: ItemState): boolean {
  if ('absent' in c) return state[c.absent] === undefined;
  if ('exists' in c) return state[c.exists] !== undefined;
  if ('and' in c) return c.and.every((x) => holds(x, state));
  if ('or' in c) return c.or.some((x) => holds(x, state));
  const v = state[c.attr];
  // `<>` holds for an attribute the item lacks, or of the other type; any other comparison fails.
  if (v === undefined || typeof v !== typeof c.value) return c.op === '<>';
  const order = v < c.value ? -1 : v > c.value ? 1 : 0;
  return {
    '=': order === 0,
    '<>': order !== 0,
    '<': order < 0,
    '<=': order <= 0,
    '>=': order >= 0,
  }[c.op];
}

it('accepts every generated condition, and each holds exactly when its model does', async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(condition, item, async (c, attributes) => {
      const key = { pk: `cond#${++n}`, sk: 'x' };
      const set = Object.entries(attributes).map(([attr, v]) => ({ attr, value: v as Value }));
      await table.store.update({ key, set: [{ attr: 'seen', value: 1n }, ...set] });
      const state = (await table.store.get(key)) ?? {};

      const result = await table.store.update({
        key,
        set: [{ attr: 'seen', value: 2n }],
        condition: c,
      });

      expect({ condition: c, state, ok: result.ok }).toEqual({
        condition: c,
        state,
        ok: holds(c, state),
      });
    }),
    { numRuns: 100 },
  );
});
