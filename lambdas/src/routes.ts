/**
 * THE route table: every fact about a route of HTTP API v1, in one entry. The local server's
 * router, the CDK stack (functions, routes, IAM grants), the admin handler's dispatch and
 * docs/openapi.json all read it; nothing else spells a path.
 *
 * An entry names the function that serves it (`function`; routes with one function share it,
 * its file is `entry` and exports `handler`), the `operation` (the admin handler dispatches on
 * it; it is the OpenAPI operationId), who may call it (`auth`), the request and answer schemas,
 * the problem statuses it answers besides the common ones, and its OpenAPI summary. {@link ACCESS}
 * says which table items each function may touch.
 *
 * Adding a route: one entry here, plus its handler (a client route: a file exporting `handler`;
 * an admin route: an entry in admin.ts's `operations`, which does not compile without it).
 */
import { itemKeys } from '@sluice/core';
import {
  entitySchema,
  planSchema,
  ROLLUP_ENTITY,
  resourceSchema,
  SERVICE_DEFAULTS,
  settingsSchema,
  usageKeys,
} from '@sluice/core/internal';
import * as z from 'zod/mini';
import * as q from './queries.js';
import * as r from './responses.js';
import * as s from './schemas.js';

/** The functions that serve the routes. */
export type FunctionName =
  | 'acquire'
  | 'adjust'
  | 'release'
  | 'available'
  | 'usage'
  | 'health'
  | 'admin';

/** Functions that serve no route: the usage aggregator reads the table's stream. */
export type StreamFunctionName = 'aggregator';

/** Handlers' files end as this module's does: `.ts` in the sources, `.js` once built. */
const EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

/** The aggregator's file (it exports `handler`). */
export const AGGREGATOR_ENTRY = new URL(`./aggregator${EXTENSION}`, import.meta.url);

/** A schema with the name it has among the OpenAPI components. */
export interface NamedSchema {
  readonly name: string;
  readonly schema: z.ZodMiniType;
}

export interface Route<F extends FunctionName = FunctionName, Op extends string = string> {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly function: F;
  readonly operation: Op;
  readonly auth: 'client' | 'admin';
  readonly entry: URL;
  /** OpenAPI summary. */
  readonly summary: string;
  /** The JSON body it takes (a route without one takes no body). */
  readonly request?: NamedSchema;
  /** Its query parameters (all text), if it takes any. */
  readonly query?: z.ZodMiniObject;
  /** Its 200 (or 201/204) answer. */
  readonly response: NamedSchema;
  /** Problem statuses it may answer besides the common ones (400, 413, 415 with a body; 503). */
  readonly problems?: Readonly<Record<number, string>>;
  /**
   * A route of one stored document: `read` answers its version as `ETag`; `write` also takes
   * `If-Match` / `If-None-Match` and answers 412 `precondition_failed` when they do not hold.
   */
  readonly versioned?: 'read' | 'write';
}

const named = (name: string, schema: z.ZodMiniType): NamedSchema => ({ name, schema });
const at = (file: string) => new URL(file, import.meta.url);

type Details = Pick<Route, 'summary' | 'response' | 'request' | 'query' | 'problems' | 'versioned'>;

const client = <F extends FunctionName>(
  method: Route['method'],
  path: string,
  fn: F,
  details: Details,
): Route<F, F> => ({
  method,
  path,
  function: fn,
  operation: fn,
  auth: 'client',
  entry: at(`./${fn}${EXTENSION}`),
  ...details,
});

const admin = <Op extends string>(
  method: Route['method'],
  path: string,
  operation: Op,
  details: Details,
): Route<'admin', Op> => ({
  method,
  path,
  function: 'admin',
  operation,
  auth: 'admin',
  entry: at(`./admin${EXTENSION}`),
  ...details,
});

const CONFIGURATION_INVALID =
  'configuration_invalid: stored configuration does not fit together (a plan or parent that is not stored, a parent cycle); refused until an admin mends it.';

const CALLER_NOT_ALLOWED =
  'caller_not_allowed: the lease’s entity or an ancestor names other `callers`.';

/** A write that kept losing its race with others (each retried on a version check). */
const WRITE_CONFLICT = 'conflict: it kept changing while being written; retry.';

const stored = named('StoredConfig', r.storedConfig);
const page = named('StoredConfigPage', r.storedConfigPage);
const empty = named('Empty', z.null());
const notFound = { 404: 'not_found' };

/** The four routes of a kind of named document (plans, entities, resources). */
const documents = {
  list: (plural: string) => ({
    summary: `${plural}, by name; \`?limit=\` (1–${SERVICE_DEFAULTS.maxPageSize}) and \`?cursor=\` page through them.`,
    response: page,
  }),
  get: (noun: string) => ({
    summary: `One ${noun}.`,
    response: stored,
    problems: notFound,
    versioned: 'read' as const,
  }),
  put: (noun: string, request: NamedSchema) => ({
    summary: `Creates (201) or replaces (200) a ${noun}; validated fully, audited.`,
    request,
    response: stored,
    problems: { 409: WRITE_CONFLICT },
    versioned: 'write' as const,
  }),
  delete: (noun: string) => ({
    summary: `Deletes a ${noun} (204); 409 \`conflict\` while something refers to it.`,
    response: empty,
    problems: { ...notFound, 409: 'conflict' },
    versioned: 'write' as const,
  }),
};

/** Every route of HTTP API v1. */
export const routes = [
  client('POST', '/v1/acquire', 'acquire', {
    summary: 'May this call go ahead? Takes the estimated usage from every limit at once.',
    request: named('AcquireRequest', s.acquireRequest),
    response: named('AcquireAllowed', r.acquireAllowed),
    problems: {
      403: 'resource_not_allowed (not in the plan), entity_disabled, unknown_entity (settings refuse unregistered entities), or caller_not_allowed (the entity or an ancestor names its `callers`, and this IAM principal is not one of them).',
      422: 'exceeds_capacity: larger than a limit can ever hold; context_too_large: input_tokens above the plan’s max_input_tokens; price_unknown: a cost limit applies and the resource has no price.',
      409: CONFIGURATION_INVALID,
      429: 'rate_limited: retry after `retry_after_ms` (also Retry-After).',
    },
  }),
  client('POST', '/v1/adjust', 'adjust', {
    summary:
      'Actual usage so far (running totals); applied exactly once. Each metric only grows: a lower value (a late or duplicated copy) changes nothing.',
    request: named('AdjustRequest', s.adjustRequest),
    response: named('SettleResponse', r.settleResponse),
    problems: {
      403: CALLER_NOT_ALLOWED,
      404: 'lease_not_found: unknown, expired or altered lease.',
      409: `lease_settled; ${CONFIGURATION_INVALID}`,
    },
  }),
  client('POST', '/v1/release', 'release', {
    summary:
      'Settle with final totals (exactly as given), or without usage give the reservation back. A refund returns what the lease still holds: what it took less what refilled since the acquire.',
    request: named('ReleaseRequest', s.releaseRequest),
    response: named('SettleResponse', r.settleResponse),
    problems: {
      403: CALLER_NOT_ALLOWED,
      404: 'lease_not_found',
      409: `lease_settled: settled differently before; ${CONFIGURATION_INVALID}`,
    },
  }),
  client('POST', '/v1/available', 'available', {
    summary: 'Remaining per limit; consumes nothing.',
    request: named('AvailableRequest', s.availableRequest),
    response: named('AvailableResponse', r.availableResponse),
    problems: {
      403: 'resource_not_allowed, entity_disabled, unknown_entity or caller_not_allowed.',
      422: 'price_unknown.',
      409: CONFIGURATION_INVALID,
    },
  }),
  client('GET', '/v1/usage', 'usage', {
    summary:
      'Usage history of an entity: what its settled leases used (each counted in the period it was acquired), leases, and refusals by limit, per hour (UTC), day or month (its time zone). Filled from the table stream within seconds.',
    query: q.usageQuery,
    response: named('UsageResponse', r.usageResponse),
    problems: {
      403: 'caller_not_allowed: the entity or an ancestor names other `callers`.',
      409: CONFIGURATION_INVALID,
    },
  }),
  client('GET', '/v1/health', 'health', {
    summary: `200 when the API can reach its table; \`usage_history\` says whether usage history is counted: \`failing\` (its last attempt failed), \`behind\` (its lag is over ${SERVICE_DEFAULTS.usageBehindMs / 1_000} s) or \`ok\`.`,
    response: named('HealthResponse', r.healthResponse),
  }),
  admin('GET', '/v1/admin/plans', 'listPlans', documents.list('Plans')),
  admin('GET', '/v1/admin/plans/{plan}', 'getPlan', documents.get('plan')),
  admin(
    'PUT',
    '/v1/admin/plans/{plan}',
    'putPlan',
    documents.put('plan', named('PlanConfig', planSchema)),
  ),
  admin('DELETE', '/v1/admin/plans/{plan}', 'deletePlan', documents.delete('plan')),
  admin('GET', '/v1/admin/entities', 'listEntities', documents.list('Entities')),
  admin('GET', '/v1/admin/entities/{entity}', 'getEntity', documents.get('entity')),
  admin(
    'PUT',
    '/v1/admin/entities/{entity}',
    'putEntity',
    documents.put('entity', named('EntityConfig', entitySchema)),
  ),
  admin('DELETE', '/v1/admin/entities/{entity}', 'deleteEntity', documents.delete('entity')),
  admin('POST', '/v1/admin/entities/{entity}/reset', 'resetEntity', {
    summary: 'Clears every bucket of the entity (a top-up); audited.',
    response: named('ResetResponse', r.resetResponse),
  }),
  admin('GET', '/v1/admin/resources', 'listResources', documents.list('Resources')),
  admin('GET', '/v1/admin/resources/{resource}', 'getResource', documents.get('resource')),
  admin(
    'PUT',
    '/v1/admin/resources/{resource}',
    'putResource',
    documents.put('resource', named('ResourceConfig', resourceSchema)),
  ),
  admin('DELETE', '/v1/admin/resources/{resource}', 'deleteResource', documents.delete('resource')),
  admin('GET', '/v1/admin/settings', 'getSettings', {
    summary: 'The settings.',
    response: stored,
    versioned: 'read',
  }),
  admin('PUT', '/v1/admin/settings', 'putSettings', {
    summary: 'Replaces the settings (unknown entities, default price); audited.',
    request: named('SettingsConfig', settingsSchema),
    response: stored,
    problems: { 409: WRITE_CONFLICT },
    versioned: 'write',
  }),
  admin('GET', '/v1/admin/audit', 'listAudit', {
    summary: `Admin changes, newest first, with before and after; kept ${SERVICE_DEFAULTS.auditRetentionDays} days by default. \`?entity=\` keeps an entity's own (its document's writes, its resets).`,
    query: q.auditQuery,
    response: named('AuditPage', r.auditPage),
  }),
  admin('GET', '/v1/admin/usage/overview', 'usageOverview', {
    summary:
      'The deployment-wide roll-up: every entity together, per resource (or all, `*`) and hour, day or month (UTC): leases, usage (tokens, cost) and refusals by limit.',
    query: q.overviewQuery,
    response: named('UsageResponse', r.usageResponse),
  }),
  admin('GET', '/v1/admin/usage/top', 'topUsage', {
    summary:
      'The entities with the most of a metric (or, `by=denied`, the most refusals) in a day or month, each in its own time zone.',
    query: q.topQuery,
    response: named('TopResponse', r.topResponse),
  }),
  admin('GET', '/v1/admin/alerts', 'listAlerts', {
    summary:
      'Budget alerts, newest window first: one per entity, quota, window and threshold; `delivered` says whether it reached the event bus (or webhook). `?entity=` keeps an entity’s own.',
    query: q.alertsQuery,
    response: named('AlertsPage', r.alertsPage),
  }),
  admin('POST', '/v1/admin/signing-keys/rotate', 'rotateSigningKey', {
    summary:
      'Rotates the lease signing key: a new key signs from now on; the previous one verifies until every lease it signed has expired. Audited (key ids only).',
    response: named('RotationResponse', r.rotationResponse),
    problems: { 409: WRITE_CONFLICT },
  }),
] as const satisfies readonly Route[];

/** The operations the admin function serves; admin.ts must handle every one. */
export type AdminOperation = Extract<(typeof routes)[number], { function: 'admin' }>['operation'];

/** `METHOD /path` as API Gateway names a route (an event's `routeKey`). */
export const routeKey = (route: Pick<Route, 'method' | 'path'>): string =>
  `${route.method} ${route.path}`;

/** DynamoDB actions a function may be granted. */
export type TableAction =
  | 'dynamodb:GetItem'
  | 'dynamodb:UpdateItem'
  | 'dynamodb:DeleteItem'
  | 'dynamodb:ConditionCheckItem'
  | 'dynamodb:Query';

/** Some actions on the items whose partition key matches one of `keys` (IAM `StringLike`). */
export interface TableAccess {
  readonly actions: readonly TableAction[];
  readonly keys: readonly string[];
  /**
   * Partition keys that `keys` match but that are not the function's: left out by an IAM Deny
   * (`StringLike` cannot spell a literal `*`, and `usage#*` is also the roll-up's own key).
   */
  readonly except?: readonly string[];
  /** Why the function needs it (shown beside the grant). */
  readonly why: string;
}

const any = '*';
const KEYS = {
  entities: itemKeys.entityBucket(any, any).pk,
  resources: itemKeys.resourceBucket(any).pk,
  leases: itemKeys.lease(any).pk,
  config: itemKeys.config(any, any).pk,
  audit: itemKeys.audit(any).pk,
  signingKey: itemKeys.leaseSigningKey().pk,
  health: itemKeys.health().pk,
  progress: usageKeys.progress().pk,
  usage: usageKeys.usage(any, 'hour', any, any).pk,
  usageTop: `${usageKeys.usageTop('day', any, 0, any).pk.split('#')[0]}#*`,
  eventLog: `${usageKeys.eventLog(0, any).pk.split('#')[0]}#*`,
  denials: itemKeys.denials(any).pk,
  alerts: usageKeys.alert(any, { pk: any, sk: any }, any, 0).pk,
  /** The deployment-wide roll-up's rows: admin reads them, the aggregator writes them. */
  rollup: usageKeys.usageHour(ROLLUP_ENTITY, '', '').pk,
} as const;

const signing: TableAccess = {
  actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
  keys: [KEYS.signingKey],
  why: 'lease signing keys: read, created on first use, written back if lost',
};
/**
 * A refund that memory says has nowhere to go is checked, not skipped blindly (the memory may be
 * older than the bucket): a condition check on the bucket, in the transaction or alone.
 */
const bucketChecks: TableAccess = {
  actions: ['dynamodb:ConditionCheckItem'],
  keys: [KEYS.entities, KEYS.resources],
  why: 'buckets: a skipped refund or give-back is checked against the bucket',
};
/** A split of a sharded scope that its splitter left frozen is completed by whoever finds it. */
const shardReads: TableAccess = {
  actions: ['dynamodb:GetItem'],
  keys: [KEYS.entities, KEYS.resources],
  why: 'sharded scopes: a split reads the shards it grows (and a frozen half its parent), a refund the shards that may hold its rest',
};
const settle: readonly TableAccess[] = [
  {
    actions: ['dynamodb:UpdateItem'], // a transaction is authorized per item as its action
    keys: [KEYS.leases, KEYS.entities, KEYS.resources],
    why: 'settlement: the lease item and its buckets (a refund’s rest on other shards), in one transaction; a stale split completed',
  },
  bucketChecks,
  shardReads,
  signing,
  {
    actions: ['dynamodb:GetItem'],
    keys: [KEYS.config],
    why: 'stored configuration: the callers the lease’s entity and its ancestors allow',
  },
];

/** Refusal counts: gathered per container, written every few seconds for the aggregator. */
const refusals: TableAccess = {
  actions: ['dynamodb:UpdateItem'],
  keys: [KEYS.denials],
  why: 'refusal counts for usage history: one small item per gathering',
};

/**
 * The least each function needs of the table, by partition key. Client functions never touch
 * stored configuration except to read it, nor the audit trail; no function may delete an audit
 * entry; the signing keys are reachable only where leases are signed, verified or rotated.
 */
export const ACCESS: Readonly<Record<FunctionName | StreamFunctionName, readonly TableAccess[]>> = {
  acquire: [
    refusals,
    {
      actions: ['dynamodb:UpdateItem'],
      keys: [KEYS.entities, KEYS.resources],
      why: 'buckets: one conditional update per scope, give-backs, and shard splits',
    },
    bucketChecks,
    shardReads,
    { actions: ['dynamodb:GetItem'], keys: [KEYS.config], why: 'stored configuration' },
    signing,
  ],
  adjust: settle,
  release: settle,
  available: [
    {
      actions: ['dynamodb:GetItem'],
      keys: [KEYS.entities, KEYS.resources, KEYS.config],
      why: 'buckets and the stored configuration that names them',
    },
  ],
  usage: [
    {
      actions: ['dynamodb:Query'],
      keys: [KEYS.usage],
      except: [KEYS.rollup],
      why: 'usage history: read only, an entity’s own (every entity’s together is the admin’s)',
    },
    {
      actions: ['dynamodb:GetItem'],
      keys: [KEYS.config],
      why: 'stored configuration: the callers the entity and its ancestors allow',
    },
  ],
  health: [
    {
      actions: ['dynamodb:GetItem'],
      keys: [KEYS.health, KEYS.progress],
      why: 'a read that proves the table answers, and how the usage aggregator stands',
    },
  ],
  aggregator: [
    {
      actions: ['dynamodb:UpdateItem'],
      keys: [KEYS.usage],
      why: 'usage history rows, each counting a stream record once by the marks it keeps',
    },
    {
      actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
      keys: [KEYS.usageTop],
      why: 'top-entities boards: read, changed and written back if unchanged',
    },
    {
      actions: ['dynamodb:UpdateItem', 'dynamodb:Query'],
      keys: [KEYS.eventLog],
      why: 'the log of usage events counted: written per batch, read for a cancellation written alone',
    },
    {
      actions: ['dynamodb:UpdateItem'],
      keys: [KEYS.alerts],
      why: 'budget alerts: created once, claimed and marked sent',
    },
    {
      actions: ['dynamodb:GetItem'],
      keys: [KEYS.entities, KEYS.resources],
      why: 'a budget alert fires only if usage still stands at its level (a read per crossing)',
    },
    {
      actions: ['dynamodb:UpdateItem'],
      keys: [KEYS.progress],
      why: 'its progress, for health: one write per batch at most',
    },
  ],
  admin: [
    {
      actions: [
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:ConditionCheckItem',
      ],
      keys: [KEYS.config],
      why: 'stored configuration, its reference counts and version checks',
    },
    {
      actions: ['dynamodb:Query', 'dynamodb:UpdateItem'],
      keys: [KEYS.entities],
      why: 'entity resets: a new generation on each bucket item',
    },
    {
      actions: ['dynamodb:Query', 'dynamodb:UpdateItem'],
      keys: [KEYS.audit],
      why: 'the audit trail: appended (never overwritten by this code) and read; never deleted',
    },
    {
      actions: ['dynamodb:GetItem', 'dynamodb:Query'],
      keys: [KEYS.usageTop],
      why: 'top entities (boards, and rows from before boards): read only',
    },
    {
      actions: ['dynamodb:Query'],
      keys: [KEYS.usage, KEYS.alerts],
      why: 'the deployment-wide roll-up and budget alerts: read only',
    },
    signing,
  ],
};

/** The functions to deploy: one per distinct `function`, with the routes each serves. */
export function functionsOf(table: readonly Route[] = routes): Map<FunctionName, Route[]> {
  const out = new Map<FunctionName, Route[]>();
  for (const route of table) out.set(route.function, [...(out.get(route.function) ?? []), route]);
  return out;
}
