/**
 * THE route table. The local server and the CDK stack both read it; no route is listed twice.
 * `name` is the function that serves the route (routes with one name share one function) and
 * `entry` its file (it exports `handler`); `operation` names the route in docs/openapi.json;
 * `auth` is the permission class a caller needs (`client`: acquire and friends; `admin`:
 * configuration). `{param}` segments of `path` arrive as `pathParameters`.
 */
export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly name: string;
  readonly operation: string;
  readonly auth: 'client' | 'admin';
  readonly entry: URL;
}

const at = (file: string) => new URL(file, import.meta.url);

const client = (method: Route['method'], path: string, name: string): Route => ({
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
];

/** The functions to deploy: one per distinct `name`, with the routes each serves. */
export function functionsOf(table: readonly Route[] = routes): Map<string, Route[]> {
  const out = new Map<string, Route[]>();
  for (const route of table) out.set(route.name, [...(out.get(route.name) ?? []), route]);
  return out;
}
