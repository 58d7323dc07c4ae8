import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { iamEvent } from '../support/events.js';
import { freshTable, handlerEnvironment } from '../support/table.js';

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<{
  statusCode?: number;
  body?: string;
}>;
let handler: Handler;

const ARN = 'arn:aws:sts::123456789012:assumed-role/platform-admins/alice';

function event(method: string, path: string, routePath: string, body?: unknown) {
  const plan = path.split('/').pop() ?? '';
  return iamEvent({
    method,
    path,
    route: routePath,
    body,
    userArn: ARN,
    ...(routePath.includes('{plan}') ? { pathParameters: { plan } } : {}),
  });
}

beforeAll(async () => {
  const table = await freshTable('admin-handler');
  handlerEnvironment(table);
  ({ handler } = (await import('@sluice/lambdas/admin')) as { handler: Handler });
});

describe('the admin handler behind IAM authorization', () => {
  it('records the caller’s IAM principal as who made the change', async () => {
    const context = { awsRequestId: 'req-1', getRemainingTimeInMillis: () => 10_000 } as Context;
    const put = await handler(
      event('PUT', '/v1/admin/plans/gold', '/v1/admin/plans/{plan}', { priority: 90 }),
      context,
    );
    const audit = await handler(event('GET', '/v1/admin/audit', '/v1/admin/audit'), context);

    expect(put.statusCode).toBe(201);
    expect(JSON.parse(put.body ?? '{}')).toMatchObject({ updated_by: ARN });
    expect(JSON.parse(audit.body ?? '{}').items[0]).toMatchObject({
      who: ARN,
      action: 'put',
      kind: 'plan',
      name: 'gold',
      before: null,
      after: { priority: 90 },
    });
  });

  it('answers a route key the route table does not name with 404, and touches nothing', async () => {
    const context = { awsRequestId: 'req-2', getRemainingTimeInMillis: () => 10_000 } as Context;
    const before = await handler(event('GET', '/v1/admin/audit', '/v1/admin/audit'), context);
    const unknown = await handler(
      event('PUT', '/v1/admin/plans/gold/extra', '/v1/admin/plans/{plan}/extra', {}),
      context,
    );
    const after = await handler(event('GET', '/v1/admin/audit', '/v1/admin/audit'), context);

    expect(unknown.statusCode).toBe(404);
    expect(JSON.parse(unknown.body ?? '{}')).toMatchObject({ code: 'not_found' });
    expect(JSON.parse(after.body ?? '{}').items).toEqual(JSON.parse(before.body ?? '{}').items);
  });

  it('requires a JSON body exactly where the route table gives the route a request schema', async () => {
    const context = { awsRequestId: 'req-3', getRemainingTimeInMillis: () => 10_000 } as Context;
    const noBody = {
      ...event('PUT', '/v1/admin/plans/silver', '/v1/admin/plans/{plan}'),
      headers: {},
    };
    const put = await handler(noBody, context);
    const rotate = await handler(
      {
        ...event('POST', '/v1/admin/signing-keys/rotate', '/v1/admin/signing-keys/rotate'),
        headers: {},
      },
      context,
    );

    expect(put.statusCode).toBe(415);
    expect(rotate.statusCode).toBe(200);
  });
});

describe('budget alerts on an item a limit may shard, through the admin handler', () => {
  const context = { awsRequestId: 'req-4', getRemainingTimeInMillis: () => 10_000 } as Context;
  const tpm = { name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute' };
  const daily = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' };
  const put = async (kind: 'plans' | 'entities', name: string, body: unknown) => {
    const param = kind === 'plans' ? 'plan' : 'entity';
    const answer = await handler(
      iamEvent({
        method: 'PUT',
        path: `/v1/admin/${kind}/${name}`,
        route: `/v1/admin/${kind}/{${param}}`,
        pathParameters: { [param]: name },
        body,
        userArn: ARN,
      }),
      context,
    );
    return { status: answer.statusCode, body: JSON.parse(answer.body ?? '{}') };
  };

  it('refuses a plan whose quota with alerts sits beside a limit that shards their item, and stores nothing', async () => {
    // Stored, the scope was split in 4 and each shard fired "50%" on its share (250), three of
    // them naming `*#1`, `*#2`, `*#3` as the resource.
    const refused = await put('plans', 'sharded', {
      limits: [
        { ...tpm, shards: 4 },
        { ...daily, alerts: [0.5] },
      ],
    });

    expect(refused).toMatchObject({
      status: 400,
      body: { code: 'invalid_request', field: 'limits[1].alerts' },
    });
    expect(
      (await handler(event('GET', '/v1/admin/plans/sharded', '/v1/admin/plans/{plan}'), context))
        .statusCode,
    ).toBe(404);
  });

  it('refuses an entity whose own limits and its plan’s would put alerts on an item that may be sharded', async () => {
    expect(
      (await put('plans', 'wide-shards', { limits: [{ ...tpm, max_shards: 8 }] })).status,
    ).toBe(201);
    expect(
      (await put('plans', 'wide-alerts', { limits: [{ ...daily, alerts: [0.8] }] })).status,
    ).toBe(201);

    const ownAlerts = await put('entities', 'key-a', {
      plan: 'wide-shards',
      limits: [{ ...daily, alerts: [0.8] }],
    });
    const ownShards = await put('entities', 'key-b', {
      plan: 'wide-alerts',
      limits: [{ ...tpm, shards: 2 }],
    });
    // Its own quota for one resource lands on an item of its own, which nothing shards.
    const apart = await put('entities', 'key-c', {
      plan: 'wide-shards',
      limits: [{ ...daily, alerts: [0.8], resource: 'gpt-4o' }],
    });

    expect(ownAlerts).toMatchObject({ status: 400, body: { field: 'limits[0].alerts' } });
    expect(ownAlerts.body.detail).toContain('"tpm" of plan wide-shards asks for up to 8 shards');
    expect(ownShards).toMatchObject({ status: 400, body: { field: 'limits[0].shards' } });
    expect(ownShards.body.detail).toContain('plan wide-alerts\'s quota "daily" has budget alerts');
    expect(apart.status).toBe(201);
  });
});
