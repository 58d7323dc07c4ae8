/**
 * SluiceAdmin: the admin routes (plans, entities, resources, settings, resets, audit), signed
 * like every Sluice request. Unlike the decision path it never fails open: an admin call either
 * did what it says or throws.
 */
import { SluiceClientError } from './errors.js';
import type { Credentials } from './signing.js';
import { type Answer, strictRequest, Transport } from './transport.js';
import type { Listing, Usage, UsageHistory, UsageQuery } from './types.js';
import {
  alertsPageFrom,
  auditPageFrom,
  resetFrom,
  rotationFrom,
  storedConfigFrom,
  storedConfigPageFrom,
  topFrom,
  usageHistoryFrom,
} from './wire.js';

/** A page of a listing: how many, and where the last page left off (its `next`). */
export interface Page {
  readonly limit?: number;
  readonly cursor?: string;
}

/**
 * A page of the audit trail or of the budget alerts, of one entity's only when `entity` is
 * given: such a page reads at most 1,000 entries, so it may hold fewer than `limit` and still
 * have a `next`.
 */
export interface EntryPage extends Page {
  readonly entity?: string;
}

/**
 * What a write requires of the stored document: `ifMatch`, one of these entity tags (a
 * {@link StoredConfig.etag}) or `*` (any: one is stored); `ifNoneMatch: '*'`, none is stored
 * (create only). A write whose condition fails throws {@link SluiceRequestError}
 * `precondition_failed` (412) and changes nothing.
 */
export interface WriteCondition {
  readonly ifMatch?: string | readonly string[];
  readonly ifNoneMatch?: '*';
}

/** What {@link SluiceAdmin.top} asks. */
export interface TopQuery {
  /** @default 'day' */
  readonly period?: 'day' | 'month';
  /** YYYY-MM-DD (a month takes its YYYY-MM). @default today (UTC) */
  readonly date?: string;
  /** @default 'cost_micro_usd' */
  readonly metric?: string;
  /** @default 'usage' */
  readonly by?: 'usage' | 'denied';
  /** @default 10 */
  readonly limit?: number;
}

/** The top entities of a day or month. */
export interface TopEntities {
  readonly period: 'day' | 'month';
  readonly date: string;
  readonly metric: string;
  readonly by: 'usage' | 'denied';
  readonly items: readonly {
    readonly entity: string;
    readonly usage: Usage;
    readonly leases: number;
    readonly denied: number;
  }[];
  /** Whether these are exactly the top entities with their figures. */
  readonly exact: boolean;
  /**
   * When not exact, the most a listed figure of the metric may be off by, and the most an
   * entity not listed may have of it (0 when exact).
   */
  readonly errorBound: number;
}

/**
 * A budget threshold crossed: what the event bus and the webhook carry (there `limit_value`), plus
 * when and whether it was delivered.
 */
export interface BudgetAlert {
  /** null for a resource-wide quota. */
  readonly entity: string | null;
  readonly resource: string | null;
  /** The quota's name. */
  readonly limit: string;
  /** Start of the window (ISO 8601). */
  readonly window: string;
  readonly threshold: number;
  readonly used: number;
  /** The quota's limit it fired under. */
  readonly limitValue: number;
  readonly at: string;
  readonly delivered: boolean;
}

/** The configuration kinds that have names. */
export type ConfigKind = 'plan' | 'entity' | 'resource';

/** A stored configuration document (`config` as it was put), and who changed it last. */
export interface StoredConfig {
  readonly kind: ConfigKind | 'settings';
  readonly name: string;
  readonly config: Record<string, unknown>;
  /** When it was last written (ISO 8601); absent for settings never written. */
  readonly updatedAt?: string;
  /** Who wrote it last: an IAM principal ARN, or `local`. */
  readonly updatedBy?: string;
  /** 0 for settings never written. */
  readonly version: number;
  /** On put: false when nothing changed. */
  readonly changed?: boolean;
  /**
   * The version's entity tag as `ETag` carries it (`"3-…"`; `"0"` for settings never written):
   * a later write's {@link WriteCondition.ifMatch}.
   */
  readonly etag?: string;
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
  /** Sends through this instead of Node's HTTP client (a proxy's, a test's). @default none */
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
    return answer.status === 404 ? undefined : stored(answer);
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
      const page = storedConfigPageFrom(answer.body);
      out.push(...page.items);
      cursor = page.next;
    } while (cursor);
    return out;
  }

  /**
   * Creates or replaces a document; Sluice validates it fully first. With `condition`, only over
   * the version it names (or only a new one).
   */
  async put(
    kind: ConfigKind,
    name: string,
    config: unknown,
    condition: WriteCondition = {},
  ): Promise<StoredConfig> {
    return stored(await this.#request('PUT', this.#path(kind, name), config, [], condition));
  }

  /** Deletes a document (409 while something refers to it); with `ifMatch`, only that version. */
  async delete(
    kind: ConfigKind,
    name: string,
    condition: Pick<WriteCondition, 'ifMatch'> = {},
  ): Promise<void> {
    await this.#request('DELETE', this.#path(kind, name), undefined, [], condition);
  }

  /** The settings (unknown entities, default price). */
  async settings(): Promise<StoredConfig> {
    return stored(await this.#request('GET', '/v1/admin/settings'));
  }

  /** Replaces the settings; with `ifMatch`, only over the version it names. */
  async putSettings(
    config: unknown,
    condition: Pick<WriteCondition, 'ifMatch'> = {},
  ): Promise<StoredConfig> {
    return stored(await this.#request('PUT', '/v1/admin/settings', config, [], condition));
  }

  /** Clears an entity's buckets (a top-up). */
  async reset(entity: string): Promise<{ entity: string; cleared: number }> {
    const answer = await this.#request('POST', `${this.#path('entity', entity)}/reset`);
    return resetFrom(answer.body);
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
    return rotationFrom((await this.#request('POST', '/v1/admin/signing-keys/rotate')).body);
  }

  /** Audit entries, newest first; pass `next` back as `cursor` for older ones. */
  async audit(options: EntryPage = {}): Promise<Listing<AuditEntry>> {
    return auditPageFrom(await this.#get('/v1/admin/audit', options));
  }

  /**
   * The entities with the most of `metric` (default `cost_micro_usd`), or with `by: 'denied'`
   * the most refusals, in a day or month (each entity's own, in its time zone).
   */
  async top(query: TopQuery = {}): Promise<TopEntities> {
    return topFrom(await this.#get('/v1/admin/usage/top', query));
  }

  /**
   * The deployment-wide roll-up: every entity together, per resource (or all of them) and hour,
   * day or month (UTC): leases, usage and refusals by limit. Its `entity` is `*`.
   */
  async overview(query: Omit<UsageQuery, 'entity'> = {}): Promise<UsageHistory> {
    const when = (v: string | Date | undefined) => (v instanceof Date ? v.toISOString() : v);
    return usageHistoryFrom(
      await this.#get('/v1/admin/usage/overview', {
        granularity: query.granularity,
        from: when(query.from),
        to: when(query.to),
        resource: query.resource,
      }),
    );
  }

  /** Budget alerts, newest window first; pass `next` back as `cursor` for older ones. */
  async alerts(options: EntryPage = {}): Promise<Listing<BudgetAlert>> {
    return alertsPageFrom(await this.#get('/v1/admin/alerts', options));
  }

  /** A GET with the defined `query` members as its query string; its answer's body. */
  async #get(path: string, query: object): Promise<unknown> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query))
      if (value !== undefined) params.set(key, String(value));
    const suffix = params.size ? `?${params}` : '';
    return (await this.#request('GET', `${path}${suffix}`)).body;
  }

  #path(kind: ConfigKind, name: string): string {
    return `/v1/admin/${COLLECTIONS[kind]}/${encodeURIComponent(name)}`;
  }

  #request(
    method: string,
    path: string,
    body?: unknown,
    expected: readonly number[] = [],
    condition: WriteCondition = {},
  ): Promise<Answer> {
    const { ifMatch, ifNoneMatch } = condition;
    for (const value of [ifMatch ?? [], ifNoneMatch ?? []].flat())
      if (!HEADER_VALUE.test(value))
        throw new SluiceClientError(
          'invalid_option',
          `${ifMatch !== undefined ? 'ifMatch' : 'ifNoneMatch'} must be entity tags as etag gives them ("3-…"), or *`,
        );
    const headers = {
      ...(ifMatch !== undefined ? { 'if-match': [ifMatch].flat().join(', ') } : {}),
      ...(ifNoneMatch !== undefined ? { 'if-none-match': ifNoneMatch } : {}),
    };
    return strictRequest(this.#transport, method, path, this.#timeoutMs, body, expected, headers);
  }
}

/** What a header may carry: visible ASCII and spaces, nothing that ends or starts a line. */
const HEADER_VALUE = /^[\x20-\x7e]+$/;

/** A stored document from an answer, with the entity tag its `ETag` carries. */
const stored = (answer: Answer): StoredConfig => ({
  ...storedConfigFrom(answer.body),
  ...(answer.etag !== undefined ? { etag: answer.etag } : {}),
});
