/**
 * The admin routes (one function): plans, entities, resources, settings, entity resets, the
 * audit trail and signing key rotation. Every write is validated fully before anything is stored
 * and records who made it. The route table names each route's operation; {@link operations}
 * handles each one (a route without a handler does not compile).
 */
import middy from '@middy/core';
import {
  ConfigAdmin,
  DynamoDBAdminStore,
  entityTag,
  listAlerts,
  type StoredConfig,
  topEntities,
  usageHistory,
  ValidationError,
  type WriteCondition,
} from '@sluice/core';
import {
  beforeDeadline,
  CONFIG_KINDS,
  type ConfigKind,
  ROLLUP_ENTITY,
  SERVICE_DEFAULTS,
  SETTINGS_NAME,
  signingKeyRetainMs,
  UNSTORED_SETTINGS_TAG,
} from '@sluice/core/internal';
import { auditRetentionDays } from './environment.js';
import { HttpProblem } from './errors.js';
import { edge, header, type JsonEvent, principalOf } from './http/edge.js';
import { json, type Result } from './http/problem.js';
import {
  alertsQuery,
  auditQuery,
  overviewQuery,
  parseQuery,
  topQuery,
  usageRange,
} from './queries.js';
import { type AdminOperation, type Route, routeKey, routes } from './routes.js';
import { getRuntime, logger, type Runtime } from './runtime.js';

/** What an operation gets: the request, the runtime, the admin stores and who is calling. */
interface Call {
  readonly event: JsonEvent;
  readonly runtime: Runtime;
  readonly admin: ConfigAdmin;
  readonly store: DynamoDBAdminStore;
  readonly who: string;
}

type Operation = (call: Call) => Promise<Result>;

function storedBody(item: StoredConfig): Record<string, unknown> {
  return {
    kind: item.kind,
    name: item.name,
    config: item.config,
    updated_at: item.updatedAt,
    updated_by: item.updatedBy,
    version: item.version,
  };
}

/** A stored document's entity tag as `ETag` carries it (quoted). */
const etag = (tag: string): Record<string, string> => ({ etag: `"${tag}"` });

/** One entity tag (RFC 9110's `entity-tag`), weak or not. */
const ENTITY_TAG = /(W\/)?"([\x21\x23-\x7e]*)"/y;

/**
 * The tags of an `If-Match` list that can match (a weak tag never does: If-Match compares
 * strongly), or undefined when the list is malformed or holds no tag. Empty elements are
 * allowed, as in every HTTP list (two `If-Match` lines are one list, joined by a comma).
 */
function tagsOf(list: string): string[] | undefined {
  const tags: string[] = [];
  let listed = 0;
  let at = 0;
  const skip = (chars: RegExp) => {
    while (at < list.length && chars.test(list.charAt(at))) at++;
  };
  for (skip(/[\s,]/); at < list.length; skip(/[\s,]/)) {
    ENTITY_TAG.lastIndex = at;
    const found = ENTITY_TAG.exec(list);
    if (!found) return undefined;
    listed++;
    if (!found[1]) tags.push(found[2] as string);
    at = ENTITY_TAG.lastIndex;
    skip(/\s/);
    if (at < list.length && list.charAt(at) !== ',') return undefined;
  }
  return listed > 0 ? tags : undefined;
}

/**
 * What a write requires of the stored document, from `If-Match` (a list of entity tags, as
 * `ETag` gave them, or `*`: one is stored) or `If-None-Match: *` (none is stored: create only).
 */
function conditionOf(event: JsonEvent): WriteCondition | undefined {
  const match = header(event, 'If-Match')?.trim();
  const noneMatch = header(event, 'If-None-Match')?.trim();
  if (match !== undefined && noneMatch !== undefined)
    throw new ValidationError('If-None-Match', 'send If-Match or If-None-Match, not both');
  if (noneMatch !== undefined) {
    if (noneMatch !== '*') throw new ValidationError('If-None-Match', 'must be * (create only)');
    return { exists: false };
  }
  if (match === undefined) return undefined;
  if (match === '*') return { exists: true };
  const tags = tagsOf(match);
  if (tags === undefined)
    throw new ValidationError('If-Match', 'must be * or entity tags as ETag gives them ("3-…")');
  return { tags };
}

/** The document name in the path (the route's `{plan}`, `{entity}` or `{resource}`). */
function nameParam(event: JsonEvent, kind: Exclude<ConfigKind, 'settings'>): string {
  const raw = event.pathParameters?.[kind] ?? '';
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw;
  }
  if (!CONFIG_KINDS[kind].name.test(name)) {
    throw new ValidationError(kind, `"${name}" is not a valid ${kind} name`);
  }
  logger.appendKeys({ kind, name });
  return name;
}

/** `?limit=` and `?cursor=` of a listing (the cursor is checked by the listing: 400 `cursor`). */
function pageParams(event: JsonEvent): { limit: number; cursor?: string } {
  const query = event.queryStringParameters ?? {};
  const { pageSize, maxPageSize } = SERVICE_DEFAULTS;
  const limit = query.limit === undefined ? pageSize : Number(query.limit);
  if (!/^\d+$/.test(query.limit ?? '1') || limit < 1 || limit > maxPageSize) {
    throw new ValidationError('limit', `must be an integer from 1 to ${maxPageSize}`);
  }
  return { limit, ...(query.cursor ? { cursor: query.cursor } : {}) };
}

/** Stores a document; answers 201 when it is new. */
async function put(call: Call, kind: ConfigKind, name: string): Promise<Result> {
  const condition = conditionOf(call.event);
  const result = await call.admin.put(kind, name, call.event.parsedBody, call.who, condition);
  call.runtime.policies.clear();
  logger.info('admin write', { kind, created: result.created, changed: result.changed });
  return json(
    result.created ? 201 : 200,
    { ...storedBody(result.stored), changed: result.changed },
    etag(entityTag(result.stored) as string),
  );
}

/** The four operations on one kind of named document. */
function documents(kind: Exclude<ConfigKind, 'settings'>) {
  return {
    list: async ({ admin, event }: Call) => {
      const page = await admin.list(kind, pageParams(event));
      return json(200, { items: page.items.map(storedBody), next: page.next });
    },
    get: async ({ admin, event }: Call) => {
      const name = nameParam(event, kind);
      const current = await admin.get(kind, name);
      if (!current) throw new HttpProblem(404, 'not_found', `no ${kind} named ${name}`);
      return json(200, storedBody(current), etag(entityTag(current) as string));
    },
    put: (call: Call) => put(call, kind, nameParam(call.event, kind)),
    delete: async (call: Call) => {
      const name = nameParam(call.event, kind);
      await call.admin.delete(kind, name, call.who, conditionOf(call.event));
      call.runtime.policies.clear();
      logger.info('admin delete');
      return { statusCode: 204, headers: {}, body: '' };
    },
  } satisfies Record<string, Operation>;
}

const plans = documents('plan');
const entities = documents('entity');
const resources = documents('resource');

/** Every admin operation of the route table, by name. */
export const operations: Record<AdminOperation, Operation> = {
  listPlans: plans.list,
  getPlan: plans.get,
  putPlan: plans.put,
  deletePlan: plans.delete,
  listEntities: entities.list,
  getEntity: entities.get,
  putEntity: entities.put,
  deleteEntity: entities.delete,
  listResources: resources.list,
  getResource: resources.get,
  putResource: resources.put,
  deleteResource: resources.delete,
  resetEntity: async ({ admin, event, runtime, who }) => {
    const name = nameParam(event, 'entity');
    const { cleared } = await admin.reset(name, who);
    runtime.engine.forget(); // this process may serve acquires too (the local server does)
    logger.info('admin reset', { buckets: cleared });
    return json(200, { entity: name, cleared });
  },
  getSettings: async ({ admin }) => {
    const current = await admin.get('settings', SETTINGS_NAME);
    if (current) return json(200, storedBody(current), etag(entityTag(current) as string));
    const none = { kind: 'settings', name: SETTINGS_NAME, config: {}, version: 0 };
    return json(200, none, etag(UNSTORED_SETTINGS_TAG));
  },
  putSettings: (call) => put(call, 'settings', SETTINGS_NAME),
  listAudit: async ({ admin, event }) => {
    const query = parseQuery(auditQuery, event.queryStringParameters);
    const limit = query.limit ? Number(query.limit) : SERVICE_DEFAULTS.pageSize;
    return json(
      200,
      await admin.audit({
        limit,
        ...(query.cursor ? { cursor: query.cursor } : {}),
        ...(query.entity ? { entity: query.entity } : {}),
      }),
    );
  },
  usageOverview: async ({ store, event }) => {
    const query = parseQuery(overviewQuery, event.queryStringParameters);
    const granularity = query.granularity ?? 'day';
    const { fromMs, toMs } = usageRange(query, granularity, Date.now());
    const items = await usageHistory(store, {
      entity: ROLLUP_ENTITY,
      granularity,
      fromMs,
      toMs,
      resource: query.resource,
    });
    return json(200, { entity: ROLLUP_ENTITY, granularity, items });
  },
  topUsage: async ({ store, event }) => {
    const query = parseQuery(topQuery, event.queryStringParameters);
    const period = query.period ?? 'day';
    const date = query.date ?? new Date().toISOString().slice(0, 10);
    const metric = query.metric ?? 'cost_micro_usd';
    const by = query.by ?? 'usage';
    const limit = query.limit ? Number(query.limit) : SERVICE_DEFAULTS.topSize;
    const top = await topEntities(store, { period, date, metric, by, limit });
    return json(200, {
      period,
      date,
      metric,
      by,
      items: top.items,
      exact: top.exact,
      error_bound: top.errorBound,
    });
  },
  listAlerts: async ({ store, event }) => {
    const query = parseQuery(alertsQuery, event.queryStringParameters);
    const limit = query.limit ? Number(query.limit) : SERVICE_DEFAULTS.pageSize;
    const page = await listAlerts(store, {
      limit,
      ...(query.cursor ? { cursor: query.cursor } : {}),
      ...(query.entity ? { entity: query.entity } : {}),
    });
    return json(200, { items: page.items, next: page.next ?? null });
  },
  rotateSigningKey: async ({ admin, runtime, who }) => {
    const rotation = await admin.rotateSigningKey(who, signingKeyRetainMs());
    await runtime.engine.keys.reload(); // this process may serve acquires too (the local server does)
    logger.info('signing key rotated', { current: rotation.current, removed: rotation.removed });
    return json(200, {
      current: rotation.current,
      previous: rotation.previous,
      removed: rotation.removed,
    });
  },
};

/** The admin routes by API Gateway route key. */
const ADMIN_ROUTES: ReadonlyMap<string, Route> = new Map(
  routes.filter((route) => route.function === 'admin').map((route) => [routeKey(route), route]),
);

let stores: { admin: ConfigAdmin; store: DynamoDBAdminStore } | undefined;

export const handler = middy<JsonEvent, Result>()
  .use(
    edge({
      route: 'admin',
      body: (event) => ADMIN_ROUTES.get(event.routeKey)?.request !== undefined,
    }),
  )
  .handler(async (event) => {
    const route = ADMIN_ROUTES.get(event.routeKey);
    if (!route) throw new HttpProblem(404, 'not_found', `no route ${event.routeKey}`);
    const runtime = getRuntime();
    if (!stores) {
      const store = new DynamoDBAdminStore({
        client: runtime.client,
        tableName: runtime.env.tableName,
      });
      const admin = new ConfigAdmin({ store, auditRetentionDays: auditRetentionDays() });
      stores = { admin, store };
    }
    const operation = operations[route.operation as AdminOperation];
    const answer = operation({ event, runtime, ...stores, who: principalOf(event) ?? 'local' });
    // A read answers 503 at the caller's deadline, as the client routes do (a stalled table):
    // reading on would reach nobody.
    return route.method === 'GET' ? beforeDeadline(answer, event.deadline) : answer;
  });
