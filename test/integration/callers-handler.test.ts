/**
 * Callers bound to tenants, at the handlers, with events as API Gateway's IAM authorizer sends
 * them: the principal is `requestContext.authorizer.iam.userArn`, nothing else.
 */
import { ConfigAdmin } from '@sluice/core';
import { routes } from '@sluice/lambdas/routes';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { iamEvent } from '../support/events.js';
import { freshTable, handlerEnvironment, type TestTable } from '../support/table.js';

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<{ statusCode?: number; body?: string }>;
type Route = 'acquire' | 'adjust' | 'release' | 'available' | 'usage';

const ACCOUNT = '111122223333';
const TEAM_A = `arn:aws:sts::${ACCOUNT}:assumed-role/team-a-api/chat-handler`;
const TEAM_B = `arn:aws:sts::${ACCOUNT}:assumed-role/team-b-api/chat-handler`;

let table: TestTable;
const handlers = new Map<Route, Handler>();

beforeAll(async () => {
  table = await freshTable('callers-handler');
  handlerEnvironment(table);
  for (const route of ['acquire', 'adjust', 'release', 'available', 'usage'] as const) {
    const entry = routes.find((r) => r.operation === route)?.entry as URL;
    const module = (await import(entry.href)) as { handler: Handler };
    handlers.set(route, module.handler);
  }
  const admin = new ConfigAdmin({ store: table.store });
  await admin.put('entity', 'org-a', { callers: [`arn:aws:iam::${ACCOUNT}:role/team-a-*`] }, 't');
  await admin.put(
    'entity',
    'key-a',
    {
      parent: 'org-a',
      limits: [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 }],
    },
    't',
  );
});

/** An event as API Gateway sends it for an IAM-authorized request (no principal: `undefined`). */
function event(route: Route, userArn: string | undefined, body?: unknown): APIGatewayProxyEventV2 {
  return iamEvent({
    method: route === 'usage' ? 'GET' : 'POST',
    path: `/v1/${route}`,
    body,
    userArn,
    // A header claiming a principal means nothing to the handlers.
    headers: { 'x-sluice-principal': TEAM_A },
    ...(route === 'usage' ? { query: { entity: 'key-a' } } : {}),
  });
}

async function call(route: Route, userArn: string | undefined, body?: unknown) {
  const handler = handlers.get(route) as Handler;
  const result = await handler(event(route, userArn, body), {} as Context);
  return { status: result.statusCode, body: JSON.parse(result.body ?? '{}') };
}

const remaining = async () => {
  const answer = await call('available', TEAM_A, { entity: 'key-a', resource: 'gpt-4o' });
  return (answer.body.limits as { name: string; remaining: number }[]).find((l) => l.name === 'tpm')
    ?.remaining;
};

describe('callers at the handlers, behind IAM authorization', () => {
  it('serves a principal the ancestor’s callers match on every route', async () => {
    const acquired = await call('acquire', TEAM_A, {
      entity: 'key-a',
      resource: 'gpt-4o',
      usage: { tokens: 100 },
    });
    expect(acquired.status).toBe(200);
    const lease = acquired.body.lease_id;
    expect((await call('adjust', TEAM_A, { lease_id: lease, usage: { tokens: 150 } })).status).toBe(
      200,
    );
    expect(
      (await call('release', TEAM_A, { lease_id: lease, usage: { tokens: 120 } })).status,
    ).toBe(200);
    expect((await call('usage', TEAM_A)).status).toBe(200);
    expect(await remaining()).toBe(1_000 - 120);
  });

  it('refuses another principal, or none, on every route with 403 and changes nothing', async () => {
    const acquired = await call('acquire', TEAM_A, {
      entity: 'key-a',
      resource: 'gpt-4o',
      usage: { tokens: 200 },
    });
    const lease = acquired.body.lease_id;
    const before = await remaining();

    for (const who of [TEAM_B, undefined]) {
      const answers = [
        await call('acquire', who, { entity: 'key-a', resource: 'gpt-4o', usage: { tokens: 1 } }),
        await call('available', who, { entity: 'key-a', resource: 'gpt-4o' }),
        await call('usage', who),
        await call('adjust', who, { lease_id: lease, usage: { tokens: 900 } }),
        await call('release', who, { lease_id: lease }),
      ];
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 403, body: { code: 'caller_not_allowed' } });
      }
    }
    expect(await remaining()).toBe(before);
    // The lease is still the caller's own to settle, as if nobody else had tried.
    const released = await call('release', TEAM_A, { lease_id: lease, usage: { tokens: 50 } });
    expect(released.status).toBe(200);
    expect(await remaining()).toBe((before as number) + 200 - 50);
  });
});
