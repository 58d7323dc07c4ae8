/**
 * Admin writes raced by another admin at the worst moment: documents deleted and created again,
 * and moves raced by an attach below. Each race is made deterministic by holding one admin's
 * transaction until the other admin's writes have committed (the table is DynamoDB Local;
 * nothing is mocked but the timing).
 */
import { type AdminStore, ConfigAdmin, type EntityConfig, entityTag } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { fileTable } from '../support/table.js';

const table = fileTable('admin-races-2');

/**
 * The table, except that the first transaction waits for `meanwhile` to run before it is sent:
 * another admin's writes land between this admin's reads and its write.
 */
function heldOnce(store: AdminStore, meanwhile: () => Promise<unknown>): AdminStore {
  let held = false;
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'transact') {
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return async (...args: Parameters<AdminStore['transact']>) => {
        if (!held) {
          held = true;
          await meanwhile();
        }
        return target.transact(...args);
      };
    },
  });
}

const outcome = <T>(work: Promise<T>) =>
  work.then(
    () => 'written',
    (e: Error) => e.constructor.name,
  );

/** The entity's parent chain, as stored, up to 20 levels (a cycle shows as a repeat). */
async function chainOf(admin: ConfigAdmin, name: string): Promise<string[]> {
  const chain: string[] = [];
  for (let at: string | undefined = name; at !== undefined && chain.length < 20; ) {
    chain.push(at);
    at = ((await admin.get('entity', at))?.config as EntityConfig | undefined)?.parent;
  }
  return chain;
}

describe('admin writes raced by another admin', () => {
  it('never write over a document deleted and created again since it was read', async () => {
    const other = new ConfigAdmin({ store: table.store });
    await other.put('plan', 'rc-p', { description: 'first' }, 'a');
    const first = await other.get('plan', 'rc-p');
    const admin = new ConfigAdmin({
      store: heldOnce(table.store, async () => {
        await other.delete('plan', 'rc-p', 'b');
        await other.put('plan', 'rc-p', { description: 'second' }, 'b');
      }),
    });

    const written = await outcome(
      admin.put('plan', 'rc-p', { description: 'mine' }, 'a', { tags: [entityTag(first) ?? ''] }),
    );

    expect(written).toBe('PreconditionFailedError');
    expect((await other.get('plan', 'rc-p'))?.config).toEqual({ description: 'second' });
  });

  it('never store a parent cycle through an ancestor deleted and created again', async () => {
    const other = new ConfigAdmin({ store: table.store });
    await other.put('entity', 'rcy-n', {}, 'a');
    await other.put('entity', 'rcy-p', {}, 'a');
    // While n moves under p, p is deleted and created again under n (at version 1 again).
    const admin = new ConfigAdmin({
      store: heldOnce(table.store, async () => {
        await other.delete('entity', 'rcy-p', 'b');
        await other.put('entity', 'rcy-p', { parent: 'rcy-n' }, 'b');
      }),
    });

    await outcome(admin.put('entity', 'rcy-n', { parent: 'rcy-p' }, 'a'));

    const chain = await chainOf(other, 'rcy-n');
    expect(new Set(chain).size, chain.join(' → ')).toBe(chain.length);
  });

  it('never store a hierarchy deeper than 8 from a move and a child added below it', async () => {
    const other = new ConfigAdmin({ store: table.store });
    // d1 ← d2 ← … ← d7: seven levels; x alone may move under d7 (8 levels).
    for (let i = 1; i <= 7; i++)
      await other.put('entity', `rd-d${i}`, i === 1 ? {} : { parent: `rd-d${i - 1}` }, 'a');
    await other.put('entity', 'rd-x', {}, 'a');
    // While x moves, y is added under x: each alone is fine, together nine levels.
    const admin = new ConfigAdmin({
      store: heldOnce(table.store, () => other.put('entity', 'rd-y', { parent: 'rd-x' }, 'b')),
    });

    await outcome(admin.put('entity', 'rd-x', { parent: 'rd-d7' }, 'a'));

    const chain = await chainOf(other, 'rd-y');
    expect(chain.length, chain.join(' → ')).toBeLessThanOrEqual(8);
  });

  it('never store a hierarchy deeper than 8 from an ancestor’s move and an entity attached below it', async () => {
    const other = new ConfigAdmin({ store: table.store });
    // r, and d1 ← d2 ← … ← d7: d1 may move under r (8 levels), or x under d7 (8 levels).
    await other.put('entity', 'ru-r', {}, 'a');
    for (let i = 1; i <= 7; i++)
      await other.put('entity', `ru-d${i}`, i === 1 ? {} : { parent: `ru-d${i - 1}` }, 'a');
    await other.put('entity', 'ru-x', {}, 'a');
    // While d1 moves under r, x is attached under d7: together nine levels.
    const admin = new ConfigAdmin({
      store: heldOnce(table.store, () => other.put('entity', 'ru-x', { parent: 'ru-d7' }, 'b')),
    });

    await outcome(admin.put('entity', 'ru-d1', { parent: 'ru-r' }, 'a'));

    const chain = await chainOf(other, 'ru-x');
    expect(chain.length, chain.join(' → ')).toBeLessThanOrEqual(8);
  });
});
