/**
 * The admin routes (one function): plans, entities, resources, settings, entity resets and the
 * audit trail. Every write is validated fully before anything is stored and records who made it.
 */
import middy from '@middy/core';
import {
  CONFIG_KINDS,
  ConfigAdmin,
  type ConfigKind,
  SETTINGS_NAME,
  type StoredConfig,
  signingKeyRetainMs,
  ValidationError,
} from '@sluice/core';
import { edge, type JsonEvent } from './http/edge.js';
import { HttpProblem, json, type Result } from './http/problem.js';
import { getRuntime, logger } from './runtime.js';

const KIND_OF = { plans: 'plan', entities: 'entity', resources: 'resource' } as const;

/** Who made a change: the caller's IAM principal, or `local` on the local server. */
function principalOf(event: JsonEvent): string {
  const context = event.requestContext as JsonEvent['requestContext'] & {
    authorizer?: { iam?: { userArn?: string; callerId?: string } };
  };
  const iam = context.authorizer?.iam;
  return iam?.userArn ?? iam?.callerId ?? 'local';
}

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

function nameParam(event: JsonEvent, param: string, kind: ConfigKind): string {
  const raw = event.pathParameters?.[param] ?? '';
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw;
  }
  if (!CONFIG_KINDS[kind].name.test(name)) {
    throw new ValidationError(param, `"${name}" is not a valid ${kind} name`);
  }
  return name;
}

function pageParams(event: JsonEvent): { limit: number; cursor?: string } {
  const query = event.queryStringParameters ?? {};
  const limit = query.limit === undefined ? 100 : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1_000) {
    throw new ValidationError('limit', 'must be an integer from 1 to 1000');
  }
  return { limit, ...(query.cursor ? { cursor: query.cursor } : {}) };
}

let configAdmin: ConfigAdmin | undefined;

async function route(event: JsonEvent): Promise<Result> {
  const { config, store, policies, engine } = getRuntime();
  configAdmin ??= new ConfigAdmin({ store, auditRetentionDays: config.auditRetentionDays });
  const admin = configAdmin;
  const who = principalOf(event);
  const [method, path = ''] = event.routeKey.split(' ');
  const segments = path.split('/').slice(3); // ['plans', '{plan}', ...]
  const collection = segments[0] ?? '';

  if (collection === 'audit') {
    const page = await admin.audit(pageParams(event));
    return json(200, page);
  }

  if (collection === 'signing-keys') {
    const rotation = await admin.rotateSigningKey(who, signingKeyRetainMs());
    await engine.keys.reload(); // this process may serve acquires too (the local server does)
    logger.info('signing key rotated', { current: rotation.current, removed: rotation.removed });
    return json(200, {
      current: rotation.current,
      previous: rotation.previous,
      removed: rotation.removed,
    });
  }

  if (collection === 'settings') {
    if (method === 'GET') {
      const current = await admin.get('settings', SETTINGS_NAME);
      if (current) return json(200, storedBody(current));
      return json(200, { kind: 'settings', name: SETTINGS_NAME, config: {}, version: 0 });
    }
    const result = await admin.put('settings', SETTINGS_NAME, event.parsedBody, who);
    policies.clear();
    logger.info('admin write', { kind: 'settings', changed: result.changed });
    return json(result.created ? 201 : 200, {
      ...storedBody(result.stored),
      changed: result.changed,
    });
  }

  const kind = KIND_OF[collection as keyof typeof KIND_OF];
  if (!kind) throw new HttpProblem(404, 'not_found', `no route ${event.routeKey}`);
  if (segments.length === 1) {
    const page = await admin.list(kind, pageParams(event));
    return json(200, { items: page.items.map(storedBody), next: page.next });
  }
  const name = nameParam(event, kind, kind);
  logger.appendKeys({ kind, name });

  if (segments[2] === 'reset') {
    const { cleared } = await admin.reset(name, who);
    engine.forget(); // this process may serve acquires too (the local server does)
    logger.info('admin reset', { buckets: cleared });
    return json(200, { entity: name, cleared });
  }
  if (method === 'GET') {
    const current = await admin.get(kind, name);
    if (!current) throw new HttpProblem(404, 'not_found', `no ${kind} named ${name}`);
    return json(200, storedBody(current));
  }
  if (method === 'DELETE') {
    await admin.delete(kind, name, who);
    policies.clear();
    logger.info('admin delete');
    return { statusCode: 204, headers: {}, body: '' };
  }
  const result = await admin.put(kind, name, event.parsedBody, who);
  policies.clear();
  logger.info('admin write', { created: result.created, changed: result.changed });
  return json(result.created ? 201 : 200, {
    ...storedBody(result.stored),
    changed: result.changed,
  });
}

export const handler = middy<JsonEvent, Result>()
  .use(edge({ route: 'admin', body: (event) => event.requestContext.http.method === 'PUT' }))
  .handler(route);
