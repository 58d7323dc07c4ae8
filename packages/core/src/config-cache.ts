/**
 * Stored configuration as acquire reads it: cached per process, so with a warm cache resolving
 * a request's policy costs no DynamoDB request and the hot path stays one write per scope.
 */
import type {
  ConfigKind,
  ConfigOf,
  EntityConfig,
  PlanConfig,
  ResourceConfig,
  SettingsConfig,
} from './config-schema.js';
import type { ConfigSource } from './policy.js';
import { Recent } from './recent.js';
import { itemKeys } from './schema.js';
import type { Store } from './store/types.js';

/** The name the settings document is stored under. */
export const SETTINGS_NAME = 'settings';

/** Options of {@link CachedConfigSource}. */
export interface CachedConfigOptions {
  readonly store: Store;
  /** How long a read (including "not found") is reused. @default 30_000 */
  readonly ttlMs?: number;
  /** Most documents kept. @default 10_000 */
  readonly size?: number;
  readonly clock?: () => number;
}

/**
 * Configuration for acquire, cached per process: with a warm cache, resolving costs no request
 * at all. A change made elsewhere takes effect here within `ttlMs`.
 */
export class CachedConfigSource implements ConfigSource {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  readonly #entries: Recent<{ atMs: number; value: Promise<unknown> }>;

  constructor(options: CachedConfigOptions) {
    this.#store = options.store;
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#clock = options.clock ?? Date.now;
    this.#entries = new Recent(options.size ?? 10_000);
  }

  plan(name: string): Promise<PlanConfig | undefined> {
    return this.#read('plan', name);
  }

  entity(id: string): Promise<EntityConfig | undefined> {
    return this.#read('entity', id);
  }

  resource(name: string): Promise<ResourceConfig | undefined> {
    return this.#read('resource', name);
  }

  async settings(): Promise<SettingsConfig> {
    return (await this.#read('settings', SETTINGS_NAME)) ?? {};
  }

  /** Forgets everything (this process wrote a change). */
  clear(): void {
    this.#entries.clear();
  }

  #read<K extends ConfigKind>(kind: K, name: string): Promise<ConfigOf<K> | undefined> {
    const id = `${kind}\u0000${name}`;
    const nowMs = this.#clock();
    const hit = this.#entries.get(id);
    if (hit && nowMs - hit.atMs < this.#ttlMs) return hit.value as Promise<ConfigOf<K> | undefined>;
    const value = this.#store
      .get(itemKeys.config(kind, name))
      .then((item) =>
        item?.doc === undefined ? undefined : (JSON.parse(String(item.doc)) as ConfigOf<K>),
      );
    this.#entries.set(id, { atMs: nowMs, value });
    value.catch(() => {
      if (this.#entries.get(id)?.value === value) this.#entries.delete(id); // retry next time
    });
    return value;
  }
}
