/**
 * The OpenAPI 3.1 document, generated from the zod schemas and the route table.
 * `npm run openapi` writes docs/openapi.json; a test fails when that file is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { entitySchema, planSchema, resourceSchema, settingsSchema } from '@sluice/core';
import * as z from 'zod/mini';
import * as r from './responses.js';
import { routes } from './routes.js';
import * as s from './schemas.js';

function schema(of: z.ZodMiniType, io: 'input' | 'output'): Record<string, unknown> {
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

const common = {
  '400': problemResponse(
    'invalid_request: a field is wrong; `field` names it. Nothing was written.',
  ),
  '413': problemResponse('payload_too_large: the body is over 64 KB.'),
  '415': problemResponse('unsupported_media_type: send application/json.'),
  '503': problemResponse('unavailable: the table cannot be reached.'),
};

const operations: Record<
  string,
  { summary: string; request?: string; ok: string; extra?: Record<string, unknown> }
> = {
  acquire: {
    summary: 'May this call go ahead? Takes the estimated usage from every limit at once.',
    request: 'AcquireRequest',
    ok: 'AcquireAllowed',
    extra: {
      '403': problemResponse(
        'resource_not_allowed (not in the plan), entity_disabled, or unknown_entity (settings refuse unregistered entities).',
      ),
      '422': problemResponse(
        'exceeds_capacity: larger than a limit can ever hold; context_too_large: input_tokens above the plan’s max_input_tokens; price_unknown: a cost limit applies and the resource has no price.',
      ),
      '409': problemResponse(
        'configuration_invalid: stored configuration does not fit together (a plan or parent that is not stored, a parent cycle); refused until an admin mends it.',
      ),
      '429': problemResponse('rate_limited: retry after `retry_after_ms` (also Retry-After).'),
    },
  },
  adjust: {
    summary:
      'Actual usage so far (running totals); applied exactly once. Each metric only grows: a lower value (a late or duplicated copy) changes nothing.',
    request: 'AdjustRequest',
    ok: 'SettleResponse',
    extra: {
      '404': problemResponse('lease_not_found: unknown, expired or altered lease.'),
      '409': problemResponse('lease_settled'),
    },
  },
  release: {
    summary:
      'Settle with final totals (exactly as given), or without usage give the reservation back. A refund returns what the lease still holds: what it took less what refilled since the acquire.',
    request: 'ReleaseRequest',
    ok: 'SettleResponse',
    extra: {
      '404': problemResponse('lease_not_found'),
      '409': problemResponse('lease_settled: settled differently before.'),
    },
  },
  available: {
    summary: 'Remaining per limit; consumes nothing.',
    request: 'AvailableRequest',
    ok: 'AvailableResponse',
    extra: {
      '403': problemResponse('resource_not_allowed, entity_disabled or unknown_entity.'),
      '422': problemResponse('price_unknown.'),
      '409': problemResponse(
        'configuration_invalid: stored configuration does not fit together (a plan or parent that is not stored, a parent cycle); refused until an admin mends it.',
      ),
    },
  },
  health: { summary: '200 when the API can reach its table.', ok: 'HealthResponse' },
  ...adminOperations(),
};

/** The admin routes: the same shapes for plans, entities and resources. */
function adminOperations(): Record<
  string,
  { summary: string; request?: string; ok: string; extra?: Record<string, unknown> }
> {
  const notFound = { '404': problemResponse('not_found') };
  const out: Record<
    string,
    { summary: string; request?: string; ok: string; extra?: Record<string, unknown> }
  > = {};
  for (const [noun, plural, schemaName] of [
    ['Plan', 'Plans', 'PlanConfig'],
    ['Entity', 'Entities', 'EntityConfig'],
    ['Resource', 'Resources', 'ResourceConfig'],
  ] as const) {
    out[`list${plural}`] = {
      summary: `${plural}, by name; \`?limit=\` (1–1000) and \`?cursor=\` page through them.`,
      ok: 'StoredConfigPage',
    };
    out[`get${noun}`] = {
      summary: `One ${noun.toLowerCase()}.`,
      ok: 'StoredConfig',
      extra: notFound,
    };
    out[`put${noun}`] = {
      summary: `Creates (201) or replaces (200) a ${noun.toLowerCase()}; validated fully, audited.`,
      request: schemaName,
      ok: 'StoredConfig',
    };
    out[`delete${noun}`] = {
      summary: `Deletes a ${noun.toLowerCase()} (204); 409 \`conflict\` while something refers to it.`,
      ok: 'Empty',
      extra: { ...notFound, '409': problemResponse('conflict') },
    };
  }
  out.resetEntity = {
    summary: 'Clears every bucket of the entity (a top-up); audited.',
    ok: 'ResetResponse',
  };
  out.getSettings = { summary: 'The settings.', ok: 'StoredConfig' };
  out.putSettings = {
    summary: 'Replaces the settings (unknown entities, default price); audited.',
    request: 'SettingsConfig',
    ok: 'StoredConfig',
  };
  out.listAudit = {
    summary: 'Admin changes, newest first, with before and after; kept 90 days by default.',
    ok: 'AuditPage',
  };
  out.rotateSigningKey = {
    summary:
      'Rotates the lease signing key: a new key signs from now on; the previous one verifies until every lease it signed has expired. Audited (key ids only).',
    ok: 'RotationResponse',
  };
  return out;
}

/** The OpenAPI 3.1 document of HTTP API v1. */
export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const op = operations[route.operation];
    if (!op) throw new Error(`no OpenAPI description for route ${route.operation}`);
    paths[route.path] = {
      ...paths[route.path],
      [route.method.toLowerCase()]: {
        operationId: route.operation,
        summary: op.summary,
        security: [{ sigv4: [] }],
        ...(op.request
          ? {
              requestBody: {
                required: true,
                content: {
                  'application/json': { schema: { $ref: `#/components/schemas/${op.request}` } },
                },
              },
            }
          : {}),
        responses: {
          '200': {
            description: 'OK',
            content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.ok}` } } },
          },
          ...(op.request ? common : { '503': common['503'] }),
          ...op.extra,
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sluice',
      version: '1.0.0',
      description:
        'Rate limiter and budget guard for LLM traffic. Errors are application/problem+json with a stable `code`.',
    },
    paths,
    components: {
      securitySchemes: {
        sigv4: {
          type: 'apiKey',
          name: 'Authorization',
          in: 'header',
          description: 'AWS SigV4 (IAM), service execute-api',
        },
      },
      schemas: {
        AcquireRequest: schema(s.acquireRequest, 'input'),
        AdjustRequest: schema(s.adjustRequest, 'input'),
        ReleaseRequest: schema(s.releaseRequest, 'input'),
        AvailableRequest: schema(s.availableRequest, 'input'),
        AcquireAllowed: schema(r.acquireAllowed, 'output'),
        SettleResponse: schema(r.settleResponse, 'output'),
        AvailableResponse: schema(r.availableResponse, 'output'),
        HealthResponse: schema(r.healthResponse, 'output'),
        Problem: schema(r.problem, 'output'),
        PlanConfig: schema(planSchema, 'input'),
        EntityConfig: schema(entitySchema, 'input'),
        ResourceConfig: schema(resourceSchema, 'input'),
        SettingsConfig: schema(settingsSchema, 'input'),
        StoredConfig: schema(r.storedConfig, 'output'),
        StoredConfigPage: schema(r.storedConfigPage, 'output'),
        ResetResponse: schema(r.resetResponse, 'output'),
        RotationResponse: schema(r.rotationResponse, 'output'),
        AuditPage: schema(r.auditPage, 'output'),
        Empty: { type: 'null' },
      },
    },
  };
}

/** Where `npm run openapi` writes it. */
export const OPENAPI_FILE = fileURLToPath(new URL('../docs/openapi.json', import.meta.url));

/** The file's exact contents. */
export function renderOpenApi(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(OPENAPI_FILE, renderOpenApi());
  console.log(`wrote ${OPENAPI_FILE}`);
}
