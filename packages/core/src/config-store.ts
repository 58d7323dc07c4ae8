/**
 * Stored configuration in the Sluice table, the admin side: validated writes, each with its
 * audit entry in the same transaction, listings, entity resets and the audit trail.
 */
import { randomBytes } from 'node:crypto';
import { canonicalJson } from './canonical.js';
import { type ConfigKind, type ConfigOf, type EntityConfig, parseConfig } from './config-schema.js';
import { SluiceError, ValidationError } from './errors.js';
import { MAX_DEPTH } from './policy.js';
import { itemAttributes, itemKeys, TABLE_SCHEMA } from './schema.js';
import { planRotation } from './signing-keys.js';
import type { AdminStore, Condition, ItemKey, ItemState, ItemWrite } from './store/types.js';

/** A configuration document as stored, with who changed it last and when. */
export interface StoredConfig<K extends ConfigKind = ConfigKind> {
  readonly kind: K;
  readonly name: string;
  readonly config: ConfigOf<K>;
  readonly updatedAt: string;
  readonly updatedBy: string;
  readonly version: number;
}

/** One audit entry: who changed what, when, from what to what. */
export interface AuditEntry {
  readonly id: string;
  readonly at: string;
  readonly who: string;
  readonly action: 'put' | 'delete' | 'reset' | 'rotate';
  readonly kind: ConfigKind | 'signing_key';
  readonly name: string;
  readonly before: unknown;
  readonly after: unknown;
}

/** A page of a listing; `next` is an opaque cursor for the page after. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

/** The result of an admin write. */
export interface WriteResult<K extends ConfigKind> {
  /** False when the stored document already equalled the new one (nothing was written). */
  readonly changed: boolean;
  readonly created: boolean;
  readonly stored: StoredConfig<K>;
}

/** Something the request names does not exist. */
export class NotFoundError extends SluiceError {
  constructor(message: string) {
    super('not_found', message);
  }
}

/** The write conflicts with stored state (in use, or changed concurrently). */
export class ConflictError extends SluiceError {
  constructor(message: string) {
    super('conflict', message);
  }
}

/**
 * Attempts of one admin write: each reads again and validates again; writes that share an item
 * (children of one parent) can meet a transaction conflict, so they back off with jitter.
 */
const WRITE_ATTEMPTS = 5;
const backOff = (attempt: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * 2 ** attempt));

const encodeCursor = (sk: string) => Buffer.from(sk).toString('base64url');
function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const sk = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!sk || encodeCursor(sk) !== cursor) throw new ValidationError('cursor', 'not a cursor');
  return sk;
}

function stored<K extends ConfigKind>(kind: K, name: string, item: ItemState): StoredConfig<K> {
  return {
    kind,
    name,
    config: JSON.parse(String(item.doc)) as ConfigOf<K>,
    updatedAt: String(item.at),
    updatedBy: String(item.by),
    version: Number(item.v ?? 0n),
  };
}

/** Options of {@link ConfigAdmin}. */
export interface ConfigAdminOptions {
  readonly store: AdminStore;
  /** How long audit entries are kept. @default 90 */
  readonly auditRetentionDays?: number;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
}

/**
 * The admin side: every write is validated fully (schema, then references: plan, parent, no
 * cycle, depth), then stored together with its audit entry in one transaction.
 *
 * @example
 * const admin = new ConfigAdmin({ store: new DynamoDBStore({ client, tableName: 'sluice' }) });
 * await admin.put('plan', 'free', { limits: [{ name: 'rpm', metric: 'requests', limit: 20, per: 'minute' }] }, who);
 * await admin.put('entity', 'key-123', { plan: 'free', parent: 'project-7' }, who);
 * const { items } = await admin.audit({ limit: 10 }); // newest first, with before and after
 */
export class ConfigAdmin {
  readonly #store: AdminStore;
  readonly #retentionDays: number;
  readonly #clock: () => number;

  constructor(options: ConfigAdminOptions) {
    this.#store = options.store;
    this.#retentionDays = options.auditRetentionDays ?? 90;
    this.#clock = options.clock ?? Date.now;
  }

  async get<K extends ConfigKind>(kind: K, name: string): Promise<StoredConfig<K> | undefined> {
    const item = await this.#store.get(itemKeys.config(kind, name));
    return item?.doc === undefined ? undefined : stored(kind, name, item);
  }

  async list<K extends ConfigKind>(
    kind: K,
    options: { limit?: number; cursor?: string } = {},
  ): Promise<Page<StoredConfig<K>>> {
    const after = decodeCursor(options.cursor);
    const page = await this.#store.query(itemKeys.config(kind, '').pk, {
      limit: options.limit ?? 100,
      ...(after !== undefined ? { after } : {}),
    });
    return {
      items: page.items.map(({ key, state }) => stored(kind, key.sk, state)),
      next: page.next === undefined ? null : encodeCursor(page.next),
    };
  }

  /** Stores `input` (validated here) as `kind`/`name`; `who` goes into the audit entry. */
  async put<K extends ConfigKind>(
    kind: K,
    name: string,
    input: unknown,
    who: string,
  ): Promise<WriteResult<K>> {
    const config = parseConfig(kind, input);
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const current = await this.get(kind, name);
      const references = await this.#checkReferences(kind, name, config, current);
      if (current && canonicalJson(current.config) === canonicalJson(config)) {
        return { changed: false, created: false, stored: current };
      }
      const next: StoredConfig<K> = {
        kind,
        name,
        config,
        updatedAt: new Date(this.#clock()).toISOString(),
        updatedBy: who,
        version: (current?.version ?? 0) + 1,
      };
      const written = await this.#write(
        current,
        next,
        { action: 'put', who, before: current?.config ?? null, after: config },
        references,
      );
      if (written) return { changed: true, created: !current, stored: next };
      await backOff(attempt);
    }
    throw new ConflictError(`${kind} ${name} kept changing while being written; retry`);
  }

  /**
   * Deletes `kind`/`name`; refuses while something refers to it. The reference count checked in
   * the delete's own transaction closes the race with a write that starts referring to it.
   */
  async delete<K extends ConfigKind>(kind: K, name: string, who: string): Promise<StoredConfig<K>> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const current = await this.get(kind, name);
      if (!current) throw new NotFoundError(`no ${kind} named ${name}`);
      await this.#checkUnused(kind, name);
      const references = new ReferenceWrites();
      const count = REFERENCE_COUNT[kind];
      if (count) references.expect(itemKeys.config(kind, name), unreferenced(count));
      if (kind === 'entity') {
        const { plan, parent } = current.config as EntityConfig;
        await this.#release(references, 'plan', plan);
        await this.#release(references, 'entity', parent);
      }
      const written = await this.#write(
        current,
        undefined,
        { action: 'delete', who, before: current.config, after: null },
        references,
      );
      if (written) return current;
      await backOff(attempt);
    }
    throw new ConflictError(`${kind} ${name} kept changing while being deleted; retry`);
  }

  /**
   * Clears every bucket of `entity` (a top-up): the next acquire starts full. Each item keeps
   * its key and TTL and moves to a new generation, so a lease taken before the reset can never
   * refund into the state after it (its debt is still charged: money spent is spent).
   */
  async reset(entity: string, who: string): Promise<{ cleared: number }> {
    const pk = itemKeys.entityBucket(entity, '').pk;
    const kept = new Set<string>([
      TABLE_SCHEMA.partitionKey,
      TABLE_SCHEMA.sortKey,
      TABLE_SCHEMA.ttlAttribute,
      itemAttributes.generation,
    ]);
    const resources: string[] = [];
    let after: string | undefined;
    do {
      const page = await this.#store.query(pk, {
        limit: 100,
        ...(after !== undefined ? { after } : {}),
      });
      await Promise.all(
        page.items.map(({ key, state }) =>
          this.#store.update({
            key,
            set: [{ attr: itemAttributes.generation, base: 0n, addToExisting: 1n }],
            remove: Object.keys(state).filter((attr) => !kept.has(attr)),
            condition: { attr: TABLE_SCHEMA.partitionKey, op: '=', value: key.pk }, // never create
          }),
        ),
      );
      resources.push(...page.items.map(({ key }) => key.sk));
      after = page.next;
    } while (after !== undefined);
    await this.#store.update(
      this.#auditUpdate({
        action: 'reset',
        who,
        kind: 'entity',
        name: entity,
        before: { buckets: resources },
        after: null,
      }),
    );
    return { cleared: resources.length };
  }

  /** Audit entries, newest first. */
  async audit(options: { limit?: number; cursor?: string } = {}): Promise<Page<AuditEntry>> {
    const after = decodeCursor(options.cursor);
    const page = await this.#store.query(itemKeys.audit('').pk, {
      limit: options.limit ?? 100,
      descending: true,
      ...(after !== undefined ? { after } : {}),
    });
    return {
      items: page.items.map(({ state }) => JSON.parse(String(state.doc)) as AuditEntry),
      next: page.next === undefined ? null : encodeCursor(page.next),
    };
  }

  /**
   * Rotates the lease signing key: a new key signs from now on, the current one
   * verifies for `retainMs` more (every lease it signed expires before), keys already retired are
   * removed. Audited (key ids only, never secrets).
   */
  async rotateSigningKey(
    who: string,
    retainMs: number,
  ): Promise<{ current: string; previous: string | null; removed: readonly string[] }> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const rotation = planRotation(
        await this.#store.get(itemKeys.leaseSigningKey()),
        this.#clock(),
        retainMs,
      );
      const result = await this.#store.transact([
        rotation.update,
        this.#auditUpdate({
          action: 'rotate',
          who,
          kind: 'signing_key',
          name: 'lease',
          before: rotation.previous === null ? null : { current: rotation.previous },
          after: { current: rotation.current, removed: rotation.removed },
        }),
      ]);
      if (result.ok) return rotation;
      await backOff(attempt);
    }
    throw new ConflictError('the signing key kept changing while being rotated; retry');
  }

  /**
   * One transaction: the config item (conditional on the version read), the audit entry, and the
   * reference counts and version checks that keep what it refers to true.
   */
  async #write<K extends ConfigKind>(
    current: StoredConfig<K> | undefined,
    next: StoredConfig<K> | undefined,
    change: { action: 'put' | 'delete'; who: string; before: unknown; after: unknown },
    references: ReferenceWrites,
  ): Promise<boolean> {
    const { kind, name } = (next ?? current) as StoredConfig<K>;
    const key = itemKeys.config(kind, name);
    const versioned: Condition = current
      ? { attr: 'v', op: '=' as const, value: BigInt(current.version) }
      : { absent: TABLE_SCHEMA.partitionKey };
    const own = references.take(key);
    const condition: Condition = own ? { and: [versioned, ...own] } : versioned;
    const configWrite = next
      ? {
          key,
          set: [
            { attr: 'doc', value: JSON.stringify(next.config) },
            { attr: 'at', value: next.updatedAt },
            { attr: 'by', value: next.updatedBy },
            { attr: 'v', value: BigInt(next.version) },
          ],
          condition,
        }
      : { key, delete: true as const, condition };
    const result = await this.#store.transact([
      configWrite,
      this.#auditUpdate({ ...change, kind, name }),
      ...references.writes(),
    ]);
    return result.ok;
  }

  #auditUpdate(change: Omit<AuditEntry, 'id' | 'at'>) {
    const nowMs = this.#clock();
    const at = new Date(nowMs).toISOString();
    const id = `${at}#${randomBytes(6).toString('hex')}`;
    const entry: AuditEntry = {
      id,
      at,
      who: change.who,
      action: change.action,
      kind: change.kind,
      name: change.name,
      before: change.before,
      after: change.after,
    };
    return {
      key: itemKeys.audit(id),
      set: [
        { attr: 'doc', value: JSON.stringify(entry) },
        {
          attr: TABLE_SCHEMA.ttlAttribute,
          value: BigInt(Math.ceil(nowMs / 1000) + this.#retentionDays * 86_400),
        },
      ],
      condition: { absent: TABLE_SCHEMA.partitionKey },
    };
  }

  /**
   * Validates what an entity refers to (its plan, its parent, no cycle, the depth) and returns
   * the writes that keep it true until the write commits: the plan's and the parent's reference
   * counts, and the version of every ancestor read. A concurrent change to any of them fails the
   * transaction, and the retry validates again.
   */
  async #checkReferences<K extends ConfigKind>(
    kind: K,
    name: string,
    config: ConfigOf<K>,
    current: StoredConfig<K> | undefined,
  ): Promise<ReferenceWrites> {
    const references = new ReferenceWrites();
    if (kind !== 'entity') return references;
    const entity = config as EntityConfig;
    const before = current?.config as EntityConfig | undefined;
    if (entity.plan !== undefined && !(await this.get('plan', entity.plan))) {
      throw new ValidationError('plan', `no plan named ${entity.plan}`);
    }
    if (entity.plan !== before?.plan) {
      if (entity.plan !== undefined) {
        const key = itemKeys.config('plan', entity.plan);
        references.count(key, 'refs', 1n);
        references.expect(key, { exists: 'v' }); // not deleted meanwhile
      }
      await this.#release(references, 'plan', before?.plan);
    }
    if (entity.parent === name) {
      throw new ValidationError('parent', 'an entity cannot be its own parent');
    }
    if (current && before?.parent === entity.parent) return references; // the hierarchy stays
    await this.#release(references, 'entity', before?.parent);
    if (entity.parent === undefined) return references;
    references.count(itemKeys.config('entity', entity.parent), 'children', 1n);
    // Levels above: walk up from the new parent (reaching `name` is a cycle).
    let above = 0;
    for (let at: string | undefined = entity.parent; at !== undefined; ) {
      if (at === name) {
        throw new ValidationError('parent', `${entity.parent} is below ${name}: a cycle`);
      }
      const found: StoredConfig<'entity'> | undefined = await this.get('entity', at);
      if (!found) {
        throw new ValidationError(
          'parent',
          at === entity.parent
            ? `no entity named ${at}`
            : `${at}, above ${entity.parent}, is missing`,
        );
      }
      references.expect(itemKeys.config('entity', at), {
        attr: 'v',
        op: '=',
        value: BigInt(found.version),
      });
      if (++above >= MAX_DEPTH) break;
      at = found.config.parent;
    }
    // Levels below: only an entity that exists can have children (a new one has none).
    const below = current ? depthBelow(name, await this.#parents()) : 0;
    if (above + 1 + below > MAX_DEPTH) {
      throw new ValidationError(
        'parent',
        `the hierarchy would be ${above + 1 + below} levels deep; at most ${MAX_DEPTH}`,
      );
    }
    return references;
  }

  /** Counts one reference fewer on `kind`/`name`, if it exists (it may not, in older data). */
  async #release(references: ReferenceWrites, kind: 'plan' | 'entity', name: string | undefined) {
    if (name === undefined || !(await this.get(kind, name))) return;
    references.count(itemKeys.config(kind, name), REFERENCE_COUNT[kind] as string, -1n);
  }

  /** Every entity's parent (a full listing: only when an existing entity moves). */
  async #parents(): Promise<Map<string, string | undefined>> {
    const parents = new Map<string, string | undefined>();
    for (const e of await this.#all('entity')) parents.set(e.name, e.config.parent);
    return parents;
  }

  async #checkUnused(kind: ConfigKind, name: string): Promise<void> {
    if (kind !== 'plan' && kind !== 'entity') return;
    const users = (await this.#all('entity'))
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

  async #all<K extends ConfigKind>(kind: K): Promise<StoredConfig<K>[]> {
    const out: StoredConfig<K>[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.list(kind, { limit: 1_000, ...(cursor ? { cursor } : {}) });
      out.push(...page.items);
      cursor = page.next ?? undefined;
    } while (cursor !== undefined);
    return out;
  }
}

/** Which count says how many refer to a document of this kind. */
const REFERENCE_COUNT: Partial<Record<ConfigKind, string>> = { plan: 'refs', entity: 'children' };

const unreferenced = (count: string): Condition => ({
  or: [{ absent: count }, { attr: count, op: '<=', value: 0n }],
});

/**
 * The extra writes of one admin transaction, one per item (a transaction may name an item once):
 * reference counts to move, conditions to hold. Counts only move on items that exist.
 */
class ReferenceWrites {
  readonly #items = new Map<
    string,
    { key: ItemKey; counts: Map<string, bigint>; conditions: Condition[] }
  >();

  #at(key: ItemKey) {
    const id = `${key.pk}\u0000${key.sk}`;
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
    const id = `${key.pk}\u0000${key.sk}`;
    const entry = this.#items.get(id);
    this.#items.delete(id);
    return entry?.conditions.length ? entry.conditions : undefined;
  }

  writes(): ItemWrite[] {
    return [...this.#items.values()].flatMap(({ key, counts, conditions }): ItemWrite[] => {
      const moves = [...counts].filter(([, by]) => by !== 0n);
      const all: Condition[] = [{ exists: 'v' }, ...conditions];
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
