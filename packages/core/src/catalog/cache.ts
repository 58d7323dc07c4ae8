/**
 * Stored configuration as acquire reads it: cached per process, so with a warm cache resolving
 * a request's policy costs no DynamoDB request and the hot path stays one write per scope.
 */

import { joinKey } from '../canonical.js';
import { SERVICE_DEFAULTS } from '../defaults.js';
import { orAfter } from '../engine/budget.js';
import { Recent } from '../engine/recent.js';
import { documentAttributes, itemKeys } from '../store/schema.js';
import type { Store } from '../store/types.js';
import type {
  ConfigKind,
  ConfigOf,
  EntityConfig,
  PlanConfig,
  ResourceConfig,
  SettingsConfig,
} from './documents.js';
import type { ConfigSource, Revised } from './policy.js';

/** The name the settings document is stored under. */
export const SETTINGS_NAME = 'settings';

/** Options of {@link CachedConfigSource}. */
export interface CachedConfigOptions {
  readonly store: Store;
  /** How long a read (including "not found") is reused. @default {@link SERVICE_DEFAULTS.configCacheMs} */
  readonly ttlMs?: number;
  /** Most documents kept. @default 10_000 */
  readonly size?: number;
  readonly clock?: () => number;
  /**
   * How long a read not answered yet is shared with later callers: past it (a connection that
   * hangs), the next caller reads again rather than wait on it. @default 3_000
   */
  readonly readTimeoutMs?: number;
}

/** One document's read, shared while it is fresh. */
interface Entry {
  /** When the read was sent. */
  readonly atMs: number;
  value: Promise<unknown>;
  answered: boolean;
}

/**
 * Configuration for acquire, cached per process: with a warm cache, resolving costs no request
 * at all. A change made elsewhere takes effect here within `ttlMs`: the one memory that answers
 * alone, for that long, by design. Meanwhile a bucket converted to a newer stored definition by a
 * process that has read it is adopted by those that have not (engine/gcra.ts), and a
 * configuration that does not fit together is read again from the table (`fresh`).
 */
export class CachedConfigSource implements ConfigSource {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  readonly #readTimeoutMs: number;
  readonly #entries: Recent<Entry>;

  constructor(options: CachedConfigOptions) {
    this.#store = options.store;
    this.#ttlMs = options.ttlMs ?? SERVICE_DEFAULTS.configCacheMs;
    this.#clock = options.clock ?? Date.now;
    this.#entries = new Recent(options.size ?? 10_000);
    this.#readTimeoutMs = options.readTimeoutMs ?? 3_000;
  }

  plan(name: string): Promise<Revised<PlanConfig> | undefined> {
    return this.#read('plan', name);
  }

  entity(id: string): Promise<Revised<EntityConfig> | undefined> {
    return this.#read('entity', id);
  }

  resource(name: string): Promise<Revised<ResourceConfig> | undefined> {
    return this.#read('resource', name);
  }

  async settings(): Promise<SettingsConfig> {
    return (await this.#read('settings', SETTINGS_NAME)) ?? {};
  }

  /**
   * When the answer this cache holds for a plan or an entity was read (when the read was sent),
   * once it has answered: a document the read did not see was written after that (reads are
   * strongly consistent). What is derived from the answer is known as of then, and no later.
   */
  readAt(kind: 'plan' | 'entity', name: string): number | undefined {
    const entry = this.#entries.get(joinKey(kind, name));
    return entry?.answered ? entry.atMs : undefined;
  }

  /** Reads through to the table, refreshing this cache with what it finds. */
  fresh(): ConfigSource {
    const read = <K extends ConfigKind>(kind: K, name: string) => this.#read(kind, name, true);
    return {
      plan: (name) => read('plan', name),
      entity: (id) => read('entity', id),
      resource: (name) => read('resource', name),
      settings: async () => (await read('settings', SETTINGS_NAME)) ?? {},
      readAt: (kind, name) => this.readAt(kind, name),
    };
  }

  /** Forgets everything (this process wrote a change). */
  clear(): void {
    this.#entries.clear();
  }

  #read<K extends ConfigKind>(
    kind: K,
    name: string,
    fresh = false,
  ): Promise<Revised<ConfigOf<K>> | undefined> {
    const id = joinKey(kind, name);
    const nowMs = this.#clock();
    const hit = this.#entries.get(id);
    const age = hit ? nowMs - hit.atMs : Number.POSITIVE_INFINITY;
    if (!fresh && hit && age < this.#ttlMs && (hit.answered || age < this.#readTimeoutMs)) {
      const shared = hit.value as Promise<Revised<ConfigOf<K>> | undefined>;
      if (hit.answered) return shared;
      // Not answered yet: waited for until it is `readTimeoutMs` old, then read again (a caller
      // that joined a read that hangs is held no longer than one that came later).
      return orAfter(shared, hit.atMs + this.#readTimeoutMs - nowMs, () => this.#read(kind, name));
    }
    const entry: Entry = { atMs: nowMs, value: Promise.resolve(), answered: false };
    const value = this.#store
      .get(itemKeys.config(kind, name))
      .then((item): Revised<ConfigOf<K>> | undefined => {
        const body = item?.[documentAttributes.body];
        if (body === undefined) return undefined;
        const doc = JSON.parse(String(body)) as ConfigOf<K>;
        const revision = Date.parse(String(item?.[documentAttributes.updatedAt]));
        return (Number.isFinite(revision) ? { ...doc, revision } : doc) as Revised<ConfigOf<K>>;
      });
    entry.value = value;
    this.#entries.set(id, entry);
    value.then(
      () => {
        entry.answered = true;
      },
      () => {},
    );
    value.catch(() => {
      if (this.#entries.get(id)?.value === value) this.#entries.delete(id); // retry next time
    });
    return value;
  }
}
