/**
 * Stored configuration in the Sluice table, the admin side: validated writes, each with its
 * audit entry in the same transaction, listings, entity resets and the audit trail.
 */
import { randomBytes } from 'node:crypto';
import { canonicalJson } from '../canonical.js';
import { SERVICE_DEFAULTS } from '../defaults.js';
import { PERIOD_SECONDS } from '../engine/limits.js';
import { nextRotation } from '../engine/signing-keys.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { decodeCursor, encodeCursor, isAuditKey, queryWhere } from '../store/cursor.js';
import { documentAttributes as D, itemKeys, TABLE_SCHEMA } from '../store/schema.js';
import type { AdminStore, Condition, ItemState } from '../store/types.js';
import { check, type WriteCondition } from './conditions.js';
import { CONFIG_KINDS, type ConfigKind, type ConfigOf, parseConfig } from './documents.js';
import {
  checkDeletable,
  checkReferences,
  type DocumentReader,
  type ReferenceWrites,
  unchanged,
} from './references.js';
import { clearEntity } from './reset.js';

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

/**
 * Attempts of one admin write: each reads again and validates again; writes that share an item
 * (children of one parent) can meet a transaction conflict, so they back off with jitter.
 */
const WRITE_ATTEMPTS = 5;
const backOff = (attempt: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * 2 ** attempt));

function stored<K extends ConfigKind>(kind: K, name: string, item: ItemState): StoredConfig<K> {
  return {
    kind,
    name,
    config: JSON.parse(String(item[D.body])) as ConfigOf<K>,
    updatedAt: String(item[D.updatedAt]),
    updatedBy: String(item[D.updatedBy]),
    version: Number(item[D.version] ?? 0n),
  };
}

/** The document of what {@link ConfigAdmin} reads, without the counts read beside it. */
function documentOf<K extends ConfigKind>({
  attached: _,
  ...document
}: StoredConfig<K> & { attached?: bigint }): StoredConfig<K> {
  return document;
}

/** Options of {@link ConfigAdmin}. */
export interface ConfigAdminOptions {
  readonly store: AdminStore;
  /** How long audit entries are kept. @default {@link SERVICE_DEFAULTS.auditRetentionDays} (90) */
  readonly auditRetentionDays?: number;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
}

/**
 * The admin side: every write is validated fully (schema, then references: plan, parent, no
 * cycle, depth), then stored together with its audit entry in one transaction.
 *
 * @example
 * const admin = new ConfigAdmin({ store: new DynamoDBAdminStore({ client, tableName: 'sluice' }) });
 * await admin.put('plan', 'free', { limits: [{ name: 'rpm', metric: 'requests', limit: 20, per: 'minute' }] }, who);
 * await admin.put('entity', 'key-123', { plan: 'free', parent: 'project-7' }, who);
 * const { items } = await admin.audit({ limit: 10 }); // newest first, with before and after
 */
export class ConfigAdmin {
  readonly #store: AdminStore;
  readonly #retentionDays: number;
  readonly #clock: () => number;
  readonly #reader: DocumentReader;

  constructor(options: ConfigAdminOptions) {
    this.#store = options.store;
    this.#retentionDays = options.auditRetentionDays ?? SERVICE_DEFAULTS.auditRetentionDays;
    this.#clock = options.clock ?? Date.now;
    this.#reader = { get: (kind, name) => this.#read(kind, name), all: (kind) => this.#all(kind) };
  }

  async get<K extends ConfigKind>(kind: K, name: string): Promise<StoredConfig<K> | undefined> {
    const found = await this.#read(kind, name);
    return found && documentOf(found);
  }

  /** A stored document with what reference checks read beside it (entities attached below). */
  async #read<K extends ConfigKind>(kind: K, name: string) {
    const item = await this.#store.get(itemKeys.config(kind, name));
    if (item?.[D.body] === undefined) return undefined;
    const attached = item[D.attached];
    return {
      ...stored(kind, name, item),
      ...(typeof attached === 'bigint' ? { attached } : {}),
    };
  }

  async list<K extends ConfigKind>(
    kind: K,
    options: { limit?: number; cursor?: string } = {},
  ): Promise<Page<StoredConfig<K>>> {
    const after = decodeCursor(options.cursor, (sk) => CONFIG_KINDS[kind].name.test(sk));
    const page = await this.#store.query(itemKeys.config(kind, '').pk, {
      limit: options.limit ?? 100,
      ...(after !== undefined ? { after } : {}),
    });
    return {
      items: page.items.map(({ key, state }) => stored(kind, key.sk, state)),
      next: page.next === undefined ? null : encodeCursor(page.next),
    };
  }

  /**
   * Stores `input` (validated here) as `kind`/`name`; `who` goes into the audit entry. With
   * `condition`, only while the stored document meets it (else a `PreconditionFailedError`,
   * nothing written): an editor passes the entity tag it read (`entityTag`), so it never
   * overwrites a change it has not seen.
   */
  async put<K extends ConfigKind>(
    kind: K,
    name: string,
    input: unknown,
    who: string,
    condition?: WriteCondition,
  ): Promise<WriteResult<K>> {
    const config = parseConfig(kind, input);
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const read = await this.#read(kind, name);
      const current = read && documentOf(read);
      check(kind, name, current, condition);
      const references = await checkReferences(this.#reader, kind, name, config, read);
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
   * the delete's own transaction closes the race with a write that starts referring to it. With
   * `condition`, only while the stored document meets it, as {@link ConfigAdmin.put}.
   */
  async delete<K extends ConfigKind>(
    kind: K,
    name: string,
    who: string,
    condition?: WriteCondition,
  ): Promise<StoredConfig<K>> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const current = await this.get(kind, name);
      if (!current) throw new NotFoundError(`no ${kind} named ${name}`);
      check(kind, name, current, condition);
      const references = await checkDeletable(this.#reader, kind, current);
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
   * its key and TTL and moves to its next generation, so a lease taken before the reset can never
   * refund into the state after it (its debt is still charged: money spent is spent); shards a
   * split makes meanwhile are cleared too (reset.ts).
   */
  async reset(entity: string, who: string): Promise<{ cleared: number }> {
    const resources = await clearEntity(this.#store, entity);
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

  /**
   * Audit entries, newest first; with `entity`, only those of that entity (its document's writes
   * and its resets), a page reading at most a bounded number of entries (it may hold fewer than
   * `limit`, and still have a `next`).
   */
  async audit(
    options: { limit?: number; cursor?: string; entity?: string } = {},
  ): Promise<Page<AuditEntry>> {
    const after = decodeCursor(options.cursor, isAuditKey);
    const asked = {
      limit: options.limit ?? 100,
      descending: true,
      ...(after !== undefined ? { after } : {}),
    };
    const { entity } = options;
    const page =
      entity === undefined
        ? await this.#store.query(itemKeys.audit('').pk, asked)
        : await queryWhere(this.#store, itemKeys.audit('').pk, asked, (state) => {
            const entry = JSON.parse(String(state[D.body])) as AuditEntry;
            return entry.kind === 'entity' && entry.name === entity;
          });
    return {
      items: page.items.map(({ state }) => JSON.parse(String(state[D.body])) as AuditEntry),
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
      const rotation = nextRotation(
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
   * One transaction: the config item (conditional on the document read), the audit entry, and the
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
      ? unchanged(current)
      : { absent: TABLE_SCHEMA.partitionKey };
    const own = references.take(key);
    const condition: Condition = own ? { and: [versioned, ...own] } : versioned;
    const configWrite = next
      ? {
          key,
          set: [
            { attr: D.body, value: JSON.stringify(next.config) },
            { attr: D.updatedAt, value: next.updatedAt },
            { attr: D.updatedBy, value: next.updatedBy },
            { attr: D.version, value: BigInt(next.version) },
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
        { attr: D.body, value: JSON.stringify(entry) },
        {
          attr: TABLE_SCHEMA.ttlAttribute,
          value: BigInt(Math.ceil(nowMs / 1000) + this.#retentionDays * PERIOD_SECONDS.day),
        },
      ],
      condition: { absent: TABLE_SCHEMA.partitionKey },
    };
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
