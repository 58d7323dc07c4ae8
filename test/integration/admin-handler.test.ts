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
