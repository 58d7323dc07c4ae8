/**
 * Conditions and updates as DynamoDB takes them, on DynamoDB Local: generated condition trees
 * (groups of none, one or many, groups within groups of the same kind or the other, comparisons
 * of numbers and strings with values of either type) and generated updates (every kind of
 * assignment, removes, no action at all) on generated items. None is refused as malformed (as
 * `((a OR b))`, an empty `SET` or an empty placeholder map are), and each does exactly what a
 * model of it does.
 */
import type { ItemKey } from '@sluice/core';
import type { Assignment, Condition, ItemState } from '@sluice/core/internal';

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
    { numRuns: 100, endOnFailure: true },
  );
});

type Attr = (typeof ATTRS)[number];
const attr = fc.constantFrom(...ATTRS);
/** An assignment to `target` of each kind the store renders. */
const assignment = (target: Attr): fc.Arbitrary<Assignment> =>
  fc.oneof(
    fc.record({ attr: fc.constant(target), value }),
    fc.record({ attr: fc.constant(target), add: fc.bigInt({ min: -2n, max: 2n }) }),
    fc.record({
      attr: fc.constant(target),
      base: fc.bigInt({ min: -2n, max: 2n }),
      addToExisting: fc.bigInt({ min: -2n, max: 2n }),
    }),
    fc.record({ attr: fc.constant(target), ifAbsent: value }),
    fc.record({ attr: fc.constant(target), copyOf: attr, orElse: value }),
  );
/** Sets and removes, each attribute at most once (DynamoDB refuses overlapping paths). */
const update = fc
  .shuffledSubarray([...ATTRS])
  .chain((targets) =>
    fc.tuple(
      fc.tuple(...targets.map((t) => fc.tuple(fc.boolean(), assignment(t)))),
      fc.option(condition, { nil: undefined }),
    ),
  )
  .map(([changes, c]) => ({
    set: changes.filter(([remove]) => !remove).map(([, a]) => a),
    remove: changes.filter(([remove]) => remove).map(([, a]) => a.attr),
    condition: c,
  }));

const withoutKey = ({ pk: _pk, sk: _sk, ...rest }: ItemState): ItemState => rest;

/** The item after an update, as DynamoDB applies it; `invalid` when DynamoDB refuses it. */
function applied(
  state: ItemState,
  set: readonly Assignment[],
  remove: readonly string[],
): ItemState | 'invalid' {
  const next: Record<string, Value> = { ...state };
  for (const a of set) {
    const old = state[a.attr];
    if ('value' in a) next[a.attr] = a.value;
    else if ('add' in a) {
      if (typeof old !== 'bigint') return 'invalid';
      next[a.attr] = old + a.add;
    } else if ('addToExisting' in a) {
      const start = old ?? a.base;
      if (typeof start !== 'bigint') return 'invalid';
      next[a.attr] = start + a.addToExisting;
    } else if ('ifAbsent' in a) next[a.attr] = old ?? a.ifAbsent;
    else next[a.attr] = state[a.copyOf] ?? a.orElse;
  }
  for (const r of remove) delete next[r];
  return next;
}

it('applies every generated update (sets of each kind, removes, none at all) as its model does', async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(update, item, async ({ set, remove, condition: c }, attributes) => {
      // The same update alone, and in a transaction, on two copies of one item.
      const single: ItemKey = { pk: `upd#${++n}`, sk: 'single' };
      const inTransaction: ItemKey = { pk: single.pk, sk: 'transact' };
      const initial = Object.entries(attributes).map(([a, v]) => ({ attr: a, value: v as Value }));
      for (const key of [single, inTransaction])
        await table.store.update({ key, set: [{ attr: 'seen', value: 1n }, ...initial] });
      const state = (await table.store.get(single)) ?? {};
      const want = c && !holds(c, state) ? 'refused' : applied(state, set, remove);
      const withKey = (key: ItemKey) => ({ key, set, remove, ...(c ? { condition: c } : {}) });
      /** What happened, the item's own attributes only (not its key). */
      const outcome = (key: ItemKey, ok: Promise<boolean>) =>
        ok.then(
          async (done) => (done ? withoutKey((await table.store.get(key)) ?? {}) : 'refused'),
          (error: { code?: string }) => (error.code === 'internal' ? 'invalid' : error),
        );

      const got = await outcome(
        single,
        table.store.update(withKey(single)).then((r) => r.ok),
      );
      const transacted = await outcome(
        inTransaction,
        table.store.transact([withKey(inTransaction)]).then((r) => r.ok),
      );

      const expected = typeof want === 'string' ? want : withoutKey(want);
      expect({ set, remove, condition: c, state, got, transacted }).toEqual({
        set,
        remove,
        condition: c,
        state,
        got: expected,
        transacted: expected,
      });
    }),
    { numRuns: 100, endOnFailure: true },
  );
});
