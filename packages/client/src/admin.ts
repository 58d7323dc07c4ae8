/**
 * SluiceAdmin: the admin routes (plans, entities, resources, settings, resets, audit), signed
 * like every Sluice request. Unlike the decision path it never fails open: an admin call either
 * did what it says or throws.
 */
import { requestErrorFrom, SluiceClientError } from './errors.js';
import type { Credentials } from './signing.js';
import { type Answer, Transport } from './transport.js';

/** The configuration kinds that have names. */
export type ConfigKind = 'plan' | 'entity' | 'resource';

/** A stored configuration document, as the admin API answers it. */
export interface StoredConfig {
  readonly kind: ConfigKind | 'settings';
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly updated_at?: string;
  readonly updated_by?: string;
  readonly version: number;
  /** On put: false when nothing changed. */
  readonly changed?: boolean;
}

/** One audit entry. */
export interface AuditEntry {
  readonly id: string;
  readonly at: string;
  readonly who: string;
  readonly action: 'put' | 'delete' | 'reset' | 'rotate';
  readonly kind: ConfigKind | 'settings' | 'signing_key';
  readonly name: string;
  readonly before: unknown;
  readonly after: unknown;
}

/** Where the admin API is and how to sign for it. */
export interface SluiceAdminOptions {
  readonly endpoint: string;
  /** @default from the endpoint's host name, else AWS_REGION */
  readonly region?: string;
  /** @default the AWS SDK's default chain; none for http://localhost */
  readonly credentials?: Credentials;
  /** Deadline of one request. @default 10_000 */
  readonly timeoutMs?: number;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** Each kind's collection: its admin path segment, and its section in the CLI's file. */
export const COLLECTIONS = {
  plan: 'plans',
  entity: 'entities',
  resource: 'resources',
} as const satisfies Record<ConfigKind, string>;

/**
 * The admin API.
 *
 * @example
 * const admin = new SluiceAdmin({ endpoint: process.env.SLUICE_URL! });
 * await admin.put('plan', 'free', { limits: [{ name: 'rpm', metric: 'requests', limit: 20, per: 'minute' }] });
 */
export class SluiceAdmin {
  readonly #transport: Transport;
  readonly #timeoutMs: number;

  constructor(options: SluiceAdminOptions) {
    this.#transport = new Transport(options);
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** One document, or undefined when there is none. */
  async get(kind: ConfigKind, name: string): Promise<StoredConfig | undefined> {
    const answer = await this.#request('GET', this.#path(kind, name), undefined, [404]);
    return answer.status === 404 ? undefined : (answer.body as StoredConfig);
  }

  /** Every document of a kind (all pages). */
  async list(kind: ConfigKind): Promise<StoredConfig[]> {
    const out: StoredConfig[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const answer = await this.#request(
        'GET',
        `/v1/admin/${COLLECTIONS[kind]}?limit=1000${query}`,
      );
      const page = answer.body as { items: StoredConfig[]; next: string | null };
      out.push(...page.items);
      cursor = page.next;
    } while (cursor);
    return out;
  }

  /** Creates or replaces a document; Sluice validates it fully first. */
  async put(kind: ConfigKind, name: string, config: unknown): Promise<StoredConfig> {
    return (await this.#request('PUT', this.#path(kind, name), config)).body as StoredConfig;
  }

  /** Deletes a document (409 while something refers to it). */
  async delete(kind: ConfigKind, name: string): Promise<void> {
    await this.#request('DELETE', this.#path(kind, name));
  }

  /** The settings (unknown entities, default price). */
  async settings(): Promise<StoredConfig> {
    return (await this.#request('GET', '/v1/admin/settings')).body as StoredConfig;
  }

  /** Replaces the settings. */
  async putSettings(config: unknown): Promise<StoredConfig> {
    return (await this.#request('PUT', '/v1/admin/settings', config)).body as StoredConfig;
  }

  /** Clears an entity's buckets (a top-up). */
  async reset(entity: string): Promise<{ entity: string; cleared: number }> {
    const answer = await this.#request('POST', `${this.#path('entity', entity)}/reset`);
    return answer.body as { entity: string; cleared: number };
  }

  /**
   * Rotates the lease signing key: a new key signs from now on, the previous one still verifies
   * the leases it signed until they expire. Answers key ids only.
   */
  async rotateSigningKey(): Promise<{
    current: string;
    previous: string | null;
    removed: string[];
  }> {
    const answer = await this.#request('POST', '/v1/admin/signing-keys/rotate');
    return answer.body as { current: string; previous: string | null; removed: string[] };
  }

  /** Audit entries, newest first; pass `next` back as `cursor` for older ones. */
  async audit(
    options: { limit?: number; cursor?: string } = {},
  ): Promise<{ items: AuditEntry[]; next: string | null }> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.cursor) query.set('cursor', options.cursor);
    const suffix = query.size ? `?${query}` : '';
    return (await this.#request('GET', `/v1/admin/audit${suffix}`)).body as {
      items: AuditEntry[];
      next: string | null;
    };
  }

  #path(kind: ConfigKind, name: string): string {
    return `/v1/admin/${COLLECTIONS[kind]}/${encodeURIComponent(name)}`;
  }

  async #request(
    method: string,
    path: string,
    body?: unknown,
    expected: readonly number[] = [],
  ): Promise<{ status: number; body: unknown }> {
    let answer: Answer;
    try {
      answer = await this.#transport.send(method, path, body, this.#timeoutMs);
    } catch (error) {
      throw new SluiceClientError(
        'unavailable',
        `Sluice cannot be reached at ${this.#transport.origin}`,
        undefined,
        { cause: error },
      );
    }
    if ((answer.status < 300 && answer.json) || expected.includes(answer.status)) return answer;
    throw requestErrorFrom(answer.status, answer.body);
  }
}
