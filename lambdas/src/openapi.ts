/**
 * The OpenAPI 3.1 document, generated from the route table (paths, summaries, schemas, problem
 * statuses). `npm run openapi` writes docs/openapi.json; a test fails when that file is stale, and
 * the e2e tier checks every answer it receives against it.
 */
import { SERVICE_DEFAULTS } from '@sluice/core/internal';
import * as z from 'zod/mini';
import { MAX_BODY_BYTES, UNAVAILABLE_RETRY_MS } from './http/limits.js';
import * as r from './responses.js';
import { type NamedSchema, type Route, routes } from './routes.js';
import { fallbackSchema, flagSchema } from './schemas.js';

// The flag is a custom schema (see schemas.ts): its JSON Schema type is declared here.
z.globalRegistry.add(flagSchema, { type: 'boolean' });
// What acquireRequest checks of `fallback` beyond its items, as far as JSON Schema can say it.
z.globalRegistry.add(fallbackSchema, {
  uniqueItems: true,
  description: 'None repeated, and not `resource` (a 400 names the entry: `fallback[1]`).',
});

function jsonSchema(of: z.ZodMiniType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(of, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return rest;
}

/** A response header: its description, and whether every such answer carries it. */
const header = (description: string, required = false) => ({
  description,
  required,
  schema: { type: 'string' },
});

/**
 * The headers answers carry, described once (components.headers): acquire's rate-limit headers
 * (the IETF httpapi draft's and OpenAI's, from the limits the decision took from, none when no
 * limit applied: http/headers.ts) and when to retry (a 429's when it can be retried; every 503's).
 */
const HEADER_COMPONENTS: Record<string, ReturnType<typeof header>> = {
  'RateLimit-Policy': header(
    'One entry per limit (at most 16: the tightest), `"name";q=<limit>;w=<window seconds>`; limits of scopes other than `entity` are named `scope.name`.',
  ),
  RateLimit: header(
    'One entry per limit, as the policy: `"name";r=<remaining>;t=<reset seconds>`.',
  ),
  ...Object.fromEntries(
    ['requests', 'tokens'].flatMap((metric) => [
      [`x-ratelimit-limit-${metric}`, header(`The tightest ${metric} limit (OpenAI style).`)],
      [`x-ratelimit-remaining-${metric}`, header('What remains of it (0 while in debt).')],
      [`x-ratelimit-reset-${metric}`, header('When it is full again: `20ms`, `1.5s`, `6m0s`.')],
    ]),
  ),
  ETag: header(
    'The stored document’s entity tag (`"3-…"`: its version and a digest of what it holds, so a document deleted and created again has another); send it back as `If-Match` to write only over it.',
    true,
  ),
  'Retry-After': header('Whole seconds to wait, rounded up.'),
  'Retry-After-Ms': header('Milliseconds to wait: `retry_after_ms`.'),
  'Retry-After-Always': header('Whole seconds to wait, rounded up.', true),
  'Retry-After-Ms-Always': header('Milliseconds to wait: `retry_after_ms`.', true),
};

/** Header name → its component. */
type Headers = Readonly<Record<string, string>>;
const same = (names: readonly string[]): Headers => Object.fromEntries(names.map((n) => [n, n]));
const RATE_LIMIT = same(
  Object.keys(HEADER_COMPONENTS).filter(
    (name) => name.startsWith('RateLimit') || name.startsWith('x-ratelimit'),
  ),
);

/** The conditions a write of one stored document takes (RFC 9110's, on its `version`). */
const CONDITION_PARAMETERS = [
  {
    name: 'If-Match',
    in: 'header',
    required: false,
    description:
      'Write only over a document with one of these entity tags (as `ETag` gave them; a weak tag never matches), or `*`: only when one is stored. Otherwise 412 `precondition_failed`, nothing written.',
    schema: { type: 'string' },
  },
  {
    name: 'If-None-Match',
    in: 'header',
    required: false,
    description: '`*`: create only (412 `precondition_failed` when one is stored).',
    schema: { type: 'string', enum: ['*'] },
  },
];

const PRECONDITION_FAILED =
  'precondition_failed: `If-Match` or `If-None-Match` does not hold for the stored document (another write came first); nothing was written.';

/** The headers of some answers, by operation and status. */
const HEADERS: ReadonlyMap<string, Readonly<Record<number, Headers>>> = new Map([
  [
    'acquire',
    {
      200: RATE_LIMIT,
      422: RATE_LIMIT,
      429: { ...RATE_LIMIT, ...same(['Retry-After', 'Retry-After-Ms']) },
    },
  ],
]);

/** What every route with a body may answer, and what every route may answer. */
const WITH_BODY = {
  400: 'invalid_request: a field is wrong; `field` names it. Nothing was written.',
  413: `payload_too_large: the body is over ${MAX_BODY_BYTES / 1024} KB.`,
  415: 'unsupported_media_type: send application/json.',
};
/** What every route may answer, described once (components.responses). */
const ALWAYS = {
  500: {
    id: 'Internal',
    description:
      'internal: an unexpected failure; the body says only "internal error" (the log has the cause).',
  },
  503: {
    id: 'Unavailable',
    description: `unavailable: the table cannot be reached, or not in time; retry after \`retry_after_ms\` (${UNAVAILABLE_RETRY_MS} ms).`,
    headers: { 'Retry-After': 'Retry-After-Always', 'Retry-After-Ms': 'Retry-After-Ms-Always' },
  },
} as const;

const ref = (named: NamedSchema) => ({ $ref: `#/components/schemas/${named.name}` });

/** The answer of a route that answers nothing (a delete's 204). */
const EMPTY = 'Empty';

/** A listing answers a page: `next` is its `?cursor=` for the page after. */
const pagedResponses: readonly z.ZodMiniType[] = [r.storedConfigPage, r.auditPage];

/** Query parameters of the listings that page without a query schema of their own. */
const PAGE_PARAMETERS = [
  {
    name: 'limit',
    in: 'query',
    required: false,
    description: `How many, 1 to ${SERVICE_DEFAULTS.maxPageSize} (default ${SERVICE_DEFAULTS.pageSize}).`,
    schema: { type: 'string', pattern: '^\\d+$' },
  },
  {
    name: 'cursor',
    in: 'query',
    required: false,
    description: 'The `next` of the page before.',
    schema: { type: 'string' },
  },
];

/** A route's query parameters, from its query schema. */
function queryParameters(query: z.ZodMiniObject): Record<string, unknown>[] {
  const schema = jsonSchema(query, 'input') as {
    properties?: Record<string, Record<string, unknown>>;
    required?: string[];
  };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => ({
    name,
    in: 'query',
    required: schema.required?.includes(name) ?? false,
    schema: property,
  }));
}

/** `{plan}` in `/v1/admin/plans/{plan}`: a stored name, checked by the handler (a 400 names it). */
const pathNames = (path: string) => [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);

function parameters(route: Route): Record<string, unknown>[] {
  return [
    ...pathNames(route.path).map((name) => ({
      name,
      in: 'path',
      required: true,
      schema: { type: 'string' },
    })),
    ...(route.query ? queryParameters(route.query) : []),
    ...(!route.query && pagedResponses.includes(route.response.schema) ? PAGE_PARAMETERS : []),
    ...(route.versioned === 'write' ? CONDITION_PARAMETERS : []),
  ];
}

const headerRefs = (names: Headers | undefined): { headers?: Record<string, unknown> } =>
  names && Object.keys(names).length > 0
    ? {
        headers: Object.fromEntries(
          Object.entries(names).map(([name, id]) => [name, { $ref: `#/components/headers/${id}` }]),
        ),
      }
    : {};

const withHeaders = (route: Route, status: number) =>
  headerRefs({
    ...HEADERS.get(route.operation)?.[status],
    ...(route.versioned ? { ETag: 'ETag' } : {}),
  });

/** A problem+json answer. */
const problemResponse = (description: string, headers?: Headers) => ({
  description,
  ...headerRefs(headers),
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

/** The answers of a route that succeed: a delete's 204 without a body; a PUT's 201 (created) or 200. */
function successes(route: Route): Record<string, unknown> {
  if (route.response.name === EMPTY) return { '204': { description: 'No Content' } };
  const answer = (description: string, status: number) => ({
    description,
    ...withHeaders(route, status),
    content: { 'application/json': { schema: ref(route.response) } },
  });
  return route.method === 'PUT'
    ? { '200': answer('Replaced (or unchanged)', 200), '201': answer('Created', 201) }
    : { '200': answer('OK', 200) };
}

function operation(route: Route): Record<string, unknown> {
  const params = parameters(route);
  const problems: Record<number, string> = {
    ...(route.request ? WITH_BODY : {}),
    // A query parameter, a stored name in the path or a page's limit or cursor can be wrong.
    ...(params.length > 0 ? { 400: WITH_BODY[400] } : {}),
    ...route.problems,
    ...(route.versioned === 'write' ? { 412: PRECONDITION_FAILED } : {}),
  };
  return {
    operationId: route.operation,
    summary: route.summary,
    security: [{ sigv4: [] }],
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(route.request
      ? {
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref(route.request) } },
          },
        }
      : {}),
    // Statuses are keys that look like integers: JavaScript keeps them in ascending order.
    responses: {
      ...successes(route),
      ...Object.fromEntries(
        Object.entries(ALWAYS).map(([status, { id }]) => [
          status,
          { $ref: `#/components/responses/${id}` },
        ]),
      ),
      ...Object.fromEntries(
        Object.entries(problems).map(([status, description]) => [
          status,
          problemResponse(description, HEADERS.get(route.operation)?.[Number(status)]),
        ]),
      ),
    },
  };
}

/** The OpenAPI 3.1 document of HTTP API v1. */
export function openApiDocument(): Record<string, unknown> {
  const paths = new Map<string, Record<string, unknown>>();
  const schemas = new Map<string, Record<string, unknown>>();
  for (const route of routes) {
    const methods = { ...paths.get(route.path), [route.method.toLowerCase()]: operation(route) };
    paths.set(route.path, methods);
    if (route.request) schemas.set(route.request.name, jsonSchema(route.request.schema, 'input'));
    if (route.response.name !== EMPTY)
      schemas.set(route.response.name, jsonSchema(route.response.schema, 'output'));
  }
  schemas.set('Problem', jsonSchema(r.problem, 'output'));
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sluice',
      version: '1.0.0',
      description:
        'Rate limiter and budget guard for LLM traffic. Errors are application/problem+json with a stable `code`. A path no route has answers 404 `not_found`; a method its path does not take, 405 `method_not_allowed` with `Allow`.',
    },
    paths: Object.fromEntries(paths),
    components: {
      securitySchemes: {
        sigv4: {
          type: 'apiKey',
          name: 'Authorization',
          in: 'header',
          description: 'AWS SigV4 (IAM), service execute-api',
        },
      },
      schemas: Object.fromEntries([...schemas].sort(([a], [b]) => a.localeCompare(b))),
      responses: Object.fromEntries(
        Object.values(ALWAYS).map(({ id, description, ...rest }) => [
          id,
          problemResponse(description, 'headers' in rest ? rest.headers : undefined),
        ]),
      ),
      headers: HEADER_COMPONENTS,
    },
  };
}

/** The file's exact contents. */
export function renderOpenApi(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}
