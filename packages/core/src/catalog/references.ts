/**
 * What keeps references between stored documents true: an entity's plan and parent exist, the
 * hierarchy has no cycle and is at most {@link MAX_DEPTH} deep, and nothing is deleted while
 * something refers to it. Each check becomes writes in the admin write's own transaction
 * (reference counts, version checks), so a concurrent change fails the transaction instead of
 * slipping past the check.
 */
import { joinKey } from '../canonical.js';
import { ConflictError, ValidationError } from '../errors.js';
import { documentAttributes as D, itemKeys } from '../store/schema.js';
import type { Condition, ItemKey, ItemWrite } from '../store/types.js';
import { checkAlertedItems } from './alerted-items.js';
import type { ConfigKind, ConfigOf, EntityConfig } from './documents.js';
import { MAX_DEPTH } from './policy.js';

/** A stored document, as far as reference checks read it. */
export interface Stored<K extends ConfigKind> {
  readonly name: string;
  readonly config: ConfigOf<K>;
  readonly version: number;
  readonly updatedAt: string;
  readonly updatedBy: string;
  /** An entity's count of entities attached below it, as read (`attached`; none: 0). */
  readonly attached?: bigint;
}

/**
 * The condition that an item still holds the very document `stored` was read from: its version,
 * and when and by whom it was written. The version alone does not say it: a document deleted and
 * created again starts at version 1 again (a write conditional on the version only would take the
 * new document for the one it read, and validate against what is no longer stored).
 */
export const unchanged = (stored: Stored<ConfigKind>): Condition => ({
  and: [
    { attr: D.version, op: '=', value: BigInt(stored.version) },
    { attr: D.updatedAt, op: '=', value: stored.updatedAt },
    { attr: D.updatedBy, op: '=', value: stored.updatedBy },
  ],
});

/** How reference checks read stored documents. */
export interface DocumentReader {
  get<K extends ConfigKind>(kind: K, name: string): Promise<Stored<K> | undefined>;
  /** Every document of a kind (a full listing). */
  all<K extends ConfigKind>(kind: K): Promise<readonly Stored<K>[]>;
}

/** Which count says how many refer to a document of this kind. */
const REFERENCE_COUNT: Partial<Record<ConfigKind, string>> = {
  plan: D.references,
  entity: D.children,
};

/** The condition that an entity's count of entities attached below it is `count` (as read). */
const attachedIs = (count: bigint | undefined): Condition =>
  count ? { attr: D.attached, op: '=', value: count } : { absent: D.attached };

/** The condition that nothing refers to a document counted by `count`. */
export const unreferenced = (kind: ConfigKind): Condition | undefined => {
  const count = REFERENCE_COUNT[kind];
  return count ? { or: [{ absent: count }, { attr: count, op: '<=', value: 0n }] } : undefined;
};

/**
 * The extra writes of one admin transaction, one per item (a transaction may name an item once):
 * reference counts to move, conditions to hold. Counts only move on items that exist.
 */
export class ReferenceWrites {
  readonly #items = new Map<
    string,
    { key: ItemKey; counts: Map<string, bigint>; conditions: Condition[] }
  >();

  #at(key: ItemKey) {
    const id = joinKey(key.pk, key.sk);
    let entry = this.#items.get(id);
    if (!entry) {
      entry = { key, counts: new Map(), conditions: [] };
      this.#items.set(id, entry);
    }
    return entry;
  }

  count(key: ItemKey, attr: string, by: bigint): void {
    const entry = this.#at(key);
    entry.counts.set(attr, (entry.counts.get(attr) ?? 0n) + by);
  }

  expect(key: ItemKey, condition: Condition): void {
    this.#at(key).conditions.push(condition);
  }

  /** Removes and returns the conditions on `key` (the document being written holds them). */
  take(key: ItemKey): Condition[] | undefined {
    const id = joinKey(key.pk, key.sk);
    const entry = this.#items.get(id);
    this.#items.delete(id);
    return entry?.conditions.length ? entry.conditions : undefined;
  }

  writes(): ItemWrite[] {
    return [...this.#items.values()].flatMap(({ key, counts, conditions }): ItemWrite[] => {
      const moves = [...counts].filter(([, by]) => by !== 0n);
      const all: Condition[] = [{ exists: D.version }, ...conditions];
      const condition: Condition = all.length === 1 ? (all[0] as Condition) : { and: all };
      if (moves.length === 0) return conditions.length ? [{ key, check: condition }] : [];
      return [
        {
          key,
          set: moves.map(([attr, by]) => ({ attr, base: 0n, addToExisting: by })),
          condition,
        },
      ];
    });
  }
}

/**
 * Validates what an entity refers to (its plan, its parent, no cycle, the depth) and returns
 * the writes that keep it true until the write commits: the plan's and the parent's reference
 * counts, and the document of every ancestor read. A concurrent change to any of them fails the
 * transaction, and the retry validates again.
 */
export async function checkReferences<K extends ConfigKind>(
  reader: DocumentReader,
  kind: K,
  name: string,
  config: ConfigOf<K>,
  current: Stored<K> | undefined,
): Promise<ReferenceWrites> {
  const references = new ReferenceWrites();
  if (kind !== 'entity') return references;
  const entity = config as EntityConfig;
  const before = current?.config as EntityConfig | undefined;
  const plan = await reader.get('plan', entity.plan ?? 'default');
  if (entity.plan !== undefined && !plan) {
    throw new ValidationError('plan', `no plan named ${entity.plan}`);
  }
  // Its own limits share items with its plan's (as the plan is now; one changed later is the
  // engine's to guard): no alerts on an item one of them may shard.
  if (plan?.config.limits && entity.limits)
    checkAlertedItems([
      { limits: plan.config.limits, source: `plan ${plan.name}` },
      { limits: entity.limits, field: 'limits' },
    ]);
  if (entity.plan !== before?.plan) {
    if (entity.plan !== undefined) {
      const key = itemKeys.config('plan', entity.plan);
      references.count(key, D.references, 1n);
      references.expect(key, { exists: D.version }); // not deleted meanwhile
    }
    await releaseReference(reader, references, 'plan', before?.plan);
  }
  if (entity.parent === name) {
    throw new ValidationError('parent', 'an entity cannot be its own parent');
  }
  if (current && before?.parent === entity.parent) return references; // the hierarchy stays
  await releaseReference(reader, references, 'entity', before?.parent);
  if (entity.parent === undefined) return references;
  references.count(itemKeys.config('entity', entity.parent), D.children, 1n);
  // Levels above: walk up from the new parent (reaching `name` is a cycle).
  let above = 0;
  for (let at: string | undefined = entity.parent; at !== undefined; ) {
    if (at === name) {
      throw new ValidationError('parent', `${entity.parent} is below ${name}: a cycle`);
    }
    const found: Stored<'entity'> | undefined = await reader.get('entity', at);
    if (!found) {
      throw new ValidationError(
        'parent',
        at === entity.parent
          ? `no entity named ${at}`
          : `${at}, above ${entity.parent}, is missing`,
      );
    }
    // Counted on every ancestor: a move of one of them meanwhile judged a shallower subtree.
    references.count(itemKeys.config('entity', at), D.attached, 1n);
    references.expect(itemKeys.config('entity', at), unchanged(found));
    if (++above >= MAX_DEPTH) break;
    at = found.config.parent;
  }
  // Levels below: only an entity that exists can have children (a new one has none). The move
  // holds only while nothing is attached below it since it was read (so the listing has it all).
  const below = current ? depthBelow(name, await parentsOf(reader)) : 0;
  if (current) references.expect(itemKeys.config('entity', name), attachedIs(current.attached));
  if (above + 1 + below > MAX_DEPTH) {
    throw new ValidationError(
      'parent',
      `the hierarchy would be ${above + 1 + below} levels deep; at most ${MAX_DEPTH}`,
    );
  }
  return references;
}

/**
 * The writes of deleting `current`: refuses while something refers to it, and counts one
 * reference fewer on what it referred to.
 */
export async function checkDeletable<K extends ConfigKind>(
  reader: DocumentReader,
  kind: K,
  current: Stored<K>,
): Promise<ReferenceWrites> {
  await checkUnused(reader, kind, current.name);
  const references = new ReferenceWrites();
  const condition = unreferenced(kind);
  if (condition) references.expect(itemKeys.config(kind, current.name), condition);
  if (kind === 'entity') {
    const { plan, parent } = current.config as EntityConfig;
    await releaseReference(reader, references, 'plan', plan);
    await releaseReference(reader, references, 'entity', parent);
  }
  return references;
}

/** Counts one reference fewer on `kind`/`name`, if it exists (it may not, in older data). */
async function releaseReference(
  reader: DocumentReader,
  references: ReferenceWrites,
  kind: 'plan' | 'entity',
  name: string | undefined,
): Promise<void> {
  if (name === undefined || !(await reader.get(kind, name))) return;
  references.count(itemKeys.config(kind, name), REFERENCE_COUNT[kind] as string, -1n);
}

/** Refuses, naming a few of them, while entities use the plan or have the entity as parent. */
async function checkUnused(reader: DocumentReader, kind: ConfigKind, name: string): Promise<void> {
  if (kind !== 'plan' && kind !== 'entity') return;
  const users = (await reader.all('entity'))
    .filter((e) => (kind === 'plan' ? e.config.plan === name : e.config.parent === name))
    .map((e) => e.name);
  if (users.length > 0) {
    const shown = users.slice(0, 5).join(', ') + (users.length > 5 ? ', …' : '');
    throw new ConflictError(
      kind === 'plan'
        ? `plan ${name} is used by ${users.length} entities (${shown})`
        : `entity ${name} is the parent of ${users.length} entities (${shown})`,
    );
  }
}

/** Every entity's parent (a full listing: only when an existing entity moves). */
async function parentsOf(reader: DocumentReader): Promise<Map<string, string | undefined>> {
  const parents = new Map<string, string | undefined>();
  for (const e of await reader.all('entity')) parents.set(e.name, e.config.parent);
  return parents;
}

/** Levels below `name` in the parent map (0 for a leaf). */
function depthBelow(name: string, parents: ReadonlyMap<string, string | undefined>): number {
  const children = new Map<string, string[]>();
  for (const [child, parent] of parents) {
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const walk = (at: string, depth: number): number =>
    depth > MAX_DEPTH
      ? depth
      : Math.max(0, ...(children.get(at) ?? []).map((c) => 1 + walk(c, depth + 1)));
  return walk(name, 0);
}
