/**
 * The OpenAPI 3.1 document, generated from the route table (paths, summaries, schemas, problem
 * statuses). `npm run openapi` writes docs/openapi.json; a test fails when that file is stale.
 */
import * as z from 'zod/mini';
import { MAX_BODY_BYTES } from './http/limits.js';
import * as r from './responses.js';
import { type NamedSchema, type Route, routes } from './routes.js';
import { flagSchema } from './schemas.js';

// The flag is a custom schema (see schemas.ts): its JSON Schema type is declared here.
z.globalRegistry.add(flagSchema, { type: 'boolean' });

function jsonSchema(of: z.ZodMiniType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(of, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return rest;
}

const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

/** What every route with a body may answer, and what every route may answer. */
const WITH_BODY = {
  400: 'invalid_request: a field is wrong; `field` names it. Nothing was written.',
  413: `payload_too_large: the body is over ${MAX_BODY_BYTES / 1024} KB.`,
  415: 'unsupported_media_type: send application/json.',
};
const ALWAYS = { 503: 'unavailable: the table cannot be reached.' };

const ref = (named: NamedSchema) => ({ $ref: `#/components/schemas/${named.name}` });

/** A route's query parameters, from its query schema. */
function parameters(query: z.ZodMiniObject): Record<string, unknown>[] {
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

function operation(route: Route): Record<string, unknown> {
  const problems = {
    ...(route.request ? WITH_BODY : {}),
    ...(route.query ? { 400: WITH_BODY[400] } : {}),
    ...ALWAYS,
    ...route.problems,
  };
  return {
    operationId: route.operation,
    summary: route.summary,
    security: [{ sigv4: [] }],
    ...(route.query ? { parameters: parameters(route.query) } : {}),
    ...(route.request
      ? {
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref(route.request) } },
          },
        }
      : {}),
    responses: {
      '200': {
        description: 'OK',
        content: { 'application/json': { schema: ref(route.response) } },
      },
      ...Object.fromEntries(
        Object.entries(problems).map(([status, text]) => [status, problemResponse(text)]),
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
    schemas.set(route.response.name, jsonSchema(route.response.schema, 'output'));
  }
  schemas.set('Problem', jsonSchema(r.problem, 'output'));
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sluice',
      version: '1.0.0',
      description:
        'Rate limiter and budget guard for LLM traffic. Errors are application/problem+json with a stable `code`.',
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
    },
  };
}

/** The file's exact contents. */
export function renderOpenApi(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}
