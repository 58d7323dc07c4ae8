/**
 * THE route table. The local server and the CDK stack both read it; no route is listed twice.
 * `name` is the function that serves the route (routes with one name share one function) and
 * `entry` its file (it exports `handler`); `operation` names the route in docs/openapi.json;
 * `auth` is the permission class a caller needs (`client`: acquire and friends; `admin`:
 * configuration). `{param}` segments of `path` arrive as `pathParameters`. {@link ACCESS} says
 * which table items each function may touch.
 */
import { itemKeys } from '@sluice/core';

/** The functions that serve the routes. */
export type FunctionName = 'acquire' | 'adjust' | 'release' | 'available' | 'health' | 'admin';

export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly name: FunctionName;
  readonly operation: string;
  readonly auth: 'client' | 'admin';
  readonly entry: URL;
}

const at = (file: string) => new URL(file, import.meta.url);

const client = (method: Route['method'], path: string, name: FunctionName): Route => ({
  method,
  path,
  name,
  operation: name,
  auth: 'client',
  entry: at(`./${name}.ts`),
});

const admin = (method: Route['method'], path: string, operation: string): Route => ({
  method,
  path,
  name: 'admin',
  operation,
  auth: 'admin',
  entry: at('./admin.ts'),
});

/** Every route of HTTP API v1. */
export const routes: readonly Route[] = [
  client('POST', '/v1/acquire', 'acquire'),
  client('POST', '/v1/adjust', 'adjust'),
  client('POST', '/v1/release', 'release'),
  client('POST', '/v1/available', 'available'),
  client('GET', '/v1/health', 'health'),
  admin('GET', '/v1/admin/plans', 'listPlans'),
  admin('GET', '/v1/admin/plans/{plan}', 'getPlan'),
  admin('PUT', '/v1/admin/plans/{plan}', 'putPlan'),
  admin('DELETE', '/v1/admin/plans/{plan}', 'deletePlan'),
  admin('GET', '/v1/admin/entities', 'listEntities'),
  admin('GET', '/v1/admin/entities/{entity}', 'getEntity'),
  admin('PUT', '/v1/admin/entities/{entity}', 'putEntity'),
  admin('DELETE', '/v1/admin/entities/{entity}', 'deleteEntity'),
  admin('POST', '/v1/admin/entities/{entity}/reset', 'resetEntity'),
  admin('GET', '/v1/admin/resources', 'listResources'),
  admin('GET', '/v1/admin/resources/{resource}', 'getResource'),
  admin('PUT', '/v1/admin/resources/{resource}', 'putResource'),
  admin('DELETE', '/v1/admin/resources/{resource}', 'deleteResource'),
  admin('GET', '/v1/admin/settings', 'getSettings'),
  admin('PUT', '/v1/admin/settings', 'putSettings'),
  admin('GET', '/v1/admin/audit', 'listAudit'),
  admin('POST', '/v1/admin/signing-keys/rotate', 'rotateSigningKey'),
];

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
} as const;

const signing: TableAccess = {
  actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
  keys: [KEYS.signingKey],
  why: 'lease signing keys: read, created on first use, written back if lost',
};
const settle: readonly TableAccess[] = [
  {
    actions: ['dynamodb:UpdateItem'], // a transaction is authorized per item as its action
    keys: [KEYS.leases, KEYS.entities, KEYS.resources],
    why: 'settlement: the lease item and its buckets, in one transaction',
  },
  signing,
];

/**
 * The least each function needs of the table, by partition key. Client functions never touch
 * stored configuration except to read it, nor the audit trail; no function may delete an audit
 * entry; the signing keys are reachable only where leases are signed, verified or rotated.
 */
export const ACCESS: Readonly<Record<FunctionName, readonly TableAccess[]>> = {
  acquire: [
    {
      actions: ['dynamodb:UpdateItem'],
      keys: [KEYS.entities, KEYS.resources],
      why: 'buckets: one conditional update per scope, and give-backs',
    },
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
  health: [
    {
      actions: ['dynamodb:GetItem'],
      keys: [KEYS.health],
      why: 'a read that proves the table answers',
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
    signing,
  ],
};

/** The functions to deploy: one per distinct `name`, with the routes each serves. */
export function functionsOf(table: readonly Route[] = routes): Map<FunctionName, Route[]> {
  const out = new Map<FunctionName, Route[]>();
  for (const route of table) out.set(route.name, [...(out.get(route.name) ?? []), route]);
  return out;
}
