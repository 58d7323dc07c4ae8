/**
 * Least privilege, proved by running it: each function's routes are served by a process whose
 * DynamoDB sits behind that function's own synthesized IAM statements (test/support/iam-proxy),
 * and a whole session of every route — configuration, acquire, settle, read, rotate, reset —
 * must work with nothing refused. A handler that needs a key its role lacks fails here.
 */

import { SluiceStack } from '@sluice/cdk';
import { SluiceClient } from '@sluice/client/in-process';
import { ensureTable } from '@sluice/core';
import {
  type FunctionName,
  functionsOf,
  routes,
  type StreamFunctionName,
} from '@sluice/lambdas/routes';
import { LOCAL_CREDENTIALS, LOCAL_REGION, localClient } from '@sluice/local';
import { App, type CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';
import {
  type Access,
  allows,
  allowsTogether,
  type IamProxy,
  keysRead,
  type Statement,
  startIamProxy,
} from '../support/iam-proxy.js';

vi.hoisted(() => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT'; // the in-process client's handlers log here
});

const app = new App();
const stack = new SluiceStack(app, 'Iam');
/** A function of the app's own that runs Sluice in process. */
const inProcessRole = new iam.Role(stack, 'InProcessCaller', {
  assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
});
stack.sluice.grantInProcess(inProcessRole);
const template = Template.fromStack(stack);
const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnElement);
const TABLE = { 'Fn::GetAtt': [logicalId(stack.sluice.table), 'Arn'] };
/** The functions that serve routes; each runs a local API under its own role's statements. */
const NAMES = [...functionsOf(routes).keys()];

function statementsOf(name: FunctionName | StreamFunctionName | iam.Role): Statement[] {
  const fn =
    typeof name !== 'string'
      ? undefined
      : name === 'aggregator'
        ? stack.sluice.aggregator
        : stack.sluice.functions.get(name);
  const granted = typeof name === 'string' ? fn?.role : name;
  if (!granted) throw new Error(`no function ${name}`);
  const role = logicalId(granted as unknown as { node: { defaultChild?: unknown } });
  const policies = template.findResources('AWS::IAM::Policy', {
    Properties: { Roles: [{ Ref: role }] },
  });
  return Object.values(policies)
    .flatMap(
      (p) =>
        (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties
          .PolicyDocument.Statement,
    )
    .filter((s) => [s.Action].flat().some((a) => a.startsWith('dynamodb:')));
}

/** A function of the stack, by name, or another role the stack grants to. */
type Grantee = Parameters<typeof statementsOf>[0];

const may = (name: Grantee, access: Access) => allows(statementsOf(name), TABLE, access);
/** Whether `name` may read the items of partition keys `pks` in one BatchGetItem. */
const mayBatch = (name: Grantee, pks: readonly string[]) =>
  allowsTogether(
    statementsOf(name),
    TABLE,
    pks.map((pk) => ({ action: 'dynamodb:BatchGetItem', pk })),
  );
/** The store reads an item alone (GetItem) or with others of its turn (BatchGetItem). */
const READS = ['dynamodb:GetItem', 'dynamodb:BatchGetItem'];

const proxies = new Map<FunctionName, IamProxy>();
let aggregatorProxy: IamProxy;
const apis = new Map<FunctionName, Api>();
const api = (name: FunctionName) => (apis.get(name) as Api).url;

let table: string;
beforeAll(async () => {
  table = tableName('iam');
  const upstream = inject('dynamoEndpoint');
  await ensureTable(localClient(upstream), table);
  // Every server's usage aggregator reads the stream and writes under the aggregator's role.
  aggregatorProxy = await startIamProxy(statementsOf('aggregator'), TABLE, upstream);
  await Promise.all(
    NAMES.map(async (name) => {
      const proxy = await startIamProxy(statementsOf(name), TABLE, upstream);
      proxies.set(name, proxy);
      apis.set(
        name,
        await startApi(table, {
          DYNAMODB_ENDPOINT: proxy.url,
          SLUICE_AGGREGATOR_ENDPOINT: aggregatorProxy.url,
          SLUICE_DENIAL_FLUSH_MS: '100',
        }),
      );
    }),
  );
});

afterAll(async () => {
  await Promise.all([...apis.values()].map((a) => a.stop()));
  await Promise.all([...proxies.values()].map((p) => p.close()));
  await aggregatorProxy?.close();
});

describe('each function under its own synthesized role', () => {
  it('serves every route of a whole session with nothing refused', async () => {
    const admin = `${api('admin')}/v1/admin`;
    const put = (path: string, body: unknown) => request('PUT', `${admin}${path}`, body);
    expect(
      (
        await put('/plans/pro', {
          limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }],
          allowed_resources: ['gpt-4o'],
          fallbacks: { 'gpt-5': ['gpt-4o'] },
        })
      ).status,
    ).toBe(201);
    expect((await put('/entities/org-1', {})).status).toBe(201);
    expect((await put('/entities/key-1', { plan: 'pro', parent: 'org-1' })).status).toBe(201);
    const resource = {
      price: { input: '2.50', output: '10.00' },
      // Sharded: the first acquire splits the scope in two, under the acquire function's role.
      limits: [
        { name: 'provider_tpm', metric: 'tokens', limit: 1_000_000, per: 'minute', shards: 2 },
      ],
    };
    expect((await put('/resources/gpt-4o', resource)).status).toBe(201);

    const ask = {
      entity: 'key-1',
      resource: 'gpt-4o',
      usage: { input_tokens: 1_000, output_tokens: 200 },
    };
    const first = await post(`${api('acquire')}/v1/acquire`, ask);
    expect(first.status).toBe(200);
    const lease = String(first.body.lease_id);
    expect(
      (await post(`${api('adjust')}/v1/adjust`, { lease_id: lease, usage: { output_tokens: 300 } }))
        .status,
    ).toBe(200);
    expect(
      (
        await post(`${api('release')}/v1/release`, {
          lease_id: lease,
          usage: { output_tokens: 350 },
        })
      ).status,
    ).toBe(200);
    expect(
      (await post(`${api('available')}/v1/available`, { entity: 'key-1', resource: 'gpt-4o' }))
        .status,
    ).toBe(200);
    expect((await request('GET', `${api('health')}/v1/health`)).status).toBe(200);
    // A fallback from the plan: gpt-5 is not allowed, gpt-4o is taken in the same call.
    const fell = await post(`${api('acquire')}/v1/acquire`, { ...ask, resource: 'gpt-5' });
    expect(fell.body).toMatchObject({ allowed: true, resource: 'gpt-4o', fell_back: true });
    expect(
      (await post(`${api('release')}/v1/release`, { lease_id: fell.body.lease_id })).status,
    ).toBe(200);

    const second = await post(`${api('acquire')}/v1/acquire`, ask);
    expect((await request('POST', `${admin}/signing-keys/rotate`)).status).toBe(200);
    expect(
      (await post(`${api('release')}/v1/release`, { lease_id: second.body.lease_id })).status,
    ).toBe(200);
    expect((await request('POST', `${admin}/entities/key-1/reset`)).status).toBe(200);
    expect((await request('GET', `${admin}/audit?limit=5`)).status).toBe(200);
    expect((await request('GET', `${admin}/usage/top?by=denied`)).status).toBe(200);
    expect((await request('GET', `${admin}/alerts`)).status).toBe(200);
    expect((await request('DELETE', `${admin}/entities/key-1`)).status).toBe(204);
    expect((await request('DELETE', `${admin}/plans/pro`)).status).toBe(204);

    // A refusal: its count is written under the acquire function's role.
    const tiny = { ...ask, limits: [{ name: 'tiny', metric: 'tokens', limit: 10, per: 'day' }] };
    expect((await post(`${api('acquire')}/v1/acquire`, tiny)).status).toBe(422);
    // Usage history, read under the usage function's role, counts the settled lease and the
    // refusal (the aggregators wrote them under theirs).
    type Period = { usage: Record<string, number>; denied: Record<string, number> };
    const usageOf = async () => {
      const answer = await request('GET', `${api('usage')}/v1/usage?entity=key-1&granularity=hour`);
      expect(answer.status).toBe(200);
      return (answer.body.items as Period[])[0];
    };
    await expect
      .poll(usageOf, { timeout: 20_000 })
      .toMatchObject({ usage: { output_tokens: 350 }, denied: { tiny: 1 } });

    for (const [name, proxy] of proxies)
      expect({ name, denied: proxy.denied }).toEqual({ name, denied: [] });
    const acquireProxy = proxies.get('acquire') as IamProxy;
    expect(
      acquireProxy.allowed.some((a) => READS.includes(a.action) && a.pk === 'resource#gpt-4o'),
    ).toBe(true); // the split read the shards
    // A first acquire reads the configuration and the signing keys in one BatchGetItem, which
    // IAM allows only if one statement covers every key it reads.
    expect(
      acquireProxy.exchanges.some((e) => {
        const pks = keysRead(e).map((k) => k.pk);
        return (
          e.operation === 'BatchGetItem' &&
          pks.includes('meta#lease-signing-key') &&
          pks.some((pk) => pk.startsWith('config#'))
        );
      }),
    ).toBe(true);
    expect(aggregatorProxy.denied).toEqual([]);
    expect(aggregatorProxy.allowed.some((a) => a.pk?.startsWith('usage#'))).toBe(true);
    // The log of usage events counted, which a cancellation written alone is checked against.
    expect(aggregatorProxy.allowed.some((a) => a.pk?.startsWith('usagelog#'))).toBe(true);
    // Usage history's progress: recorded under the aggregator's role, read under health's.
    expect(aggregatorProxy.allowed).toContainEqual({
      action: 'dynamodb:UpdateItem',
      pk: 'meta#usage-progress',
    });
    await expect
      .poll(async () => (await request('GET', `${api('health')}/v1/health`)).body.usage_history)
      .toMatchObject({ counted_at: expect.any(String) });
    // Health reads its two items together.
    expect((proxies.get('health') as IamProxy).allowed).toContainEqual({
      action: 'dynamodb:BatchGetItem',
      pk: 'meta#usage-progress',
    });
  });

  it('checks a bucket before skipping a refund there, as the settling roles allow', async () => {
    // The adjust process learns the entity's items as a reset leaves them (no bucket)...
    const admin = `${api('admin')}/v1/admin`;
    // Per day: a token refills every 8.6 s, so the count below does not depend on the pace.
    const limits = [{ name: 'tpd', metric: 'tokens', limit: 10_000, per: 'day' }];
    const ask = { entity: 'key-2', resource: 'm', usage: { tokens: 2_000 }, limits };
    const before = await post(`${api('acquire')}/v1/acquire`, ask);
    expect((await request('POST', `${admin}/entities/key-2/reset`)).status).toBe(200);
    const stale = { lease_id: before.body.lease_id, usage: { tokens: 1_000 } };
    expect((await post(`${api('adjust')}/v1/adjust`, stale)).status).toBe(200);
    // ...then settles lower a lease another process admitted after the reset.
    const after = await post(`${api('acquire')}/v1/acquire`, ask);
    const lower = { lease_id: after.body.lease_id, usage: { tokens: 500 } };
    expect((await post(`${api('adjust')}/v1/adjust`, lower)).status).toBe(200);
    const status = await post(`${api('available')}/v1/available`, {
      entity: 'key-2',
      resource: 'm',
      limits,
    });

    expect((status.body.limits as { remaining: number }[])[0]?.remaining).toBe(9_500);
    expect((proxies.get('adjust') as IamProxy).allowed).toContainEqual({
      action: 'dynamodb:ConditionCheckItem',
      pk: 'entity#key-2',
    });
    for (const [name, proxy] of proxies)
      expect({ name, denied: proxy.denied }).toEqual({ name, denied: [] });
  });

  it('refuses what a role does not have, through the same proxy', async () => {
    const { BatchGetItemCommand, DynamoDBClient, UpdateItemCommand } = await import(
      '@aws-sdk/client-dynamodb'
    );
    const client = new DynamoDBClient({
      endpoint: (proxies.get('acquire') as IamProxy).url,
      region: 'local',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });

    const write = client.send(
      new UpdateItemCommand({
        TableName: 'any',
        Key: { pk: { S: 'config#plan' }, sk: { S: 'pro' } },
        UpdateExpression: 'SET doc = :d',
        ExpressionAttributeValues: { ':d': { S: '{}' } },
      }),
    );

    await expect(write).rejects.toMatchObject({ name: 'AccessDeniedException' });

    // A batch is refused whole when one key is outside the grants, and allowed when every key
    // is inside them, whichever grant each key comes from.
    const batch = (...keys: [string, string][]) =>
      client.send(
        new BatchGetItemCommand({
          RequestItems: {
            any: { Keys: keys.map(([pk, sk]) => ({ pk: { S: pk }, sk: { S: sk } })) },
          },
        }),
      );
    await expect(batch(['config#plan', 'pro'], ['audit', 'x'])).rejects.toMatchObject({
      name: 'AccessDeniedException',
    });
    const inside = batch(['config#plan', 'pro'], ['meta#lease-signing-key', 'v1']);
    // Past the proxy: DynamoDB Local has no table `any`.
    await expect(inside).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });
});

describe('the grants', () => {
  const client: FunctionName[] = ['acquire', 'adjust', 'release', 'available', 'health'];
  const writes = ['dynamodb:UpdateItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'];

  it('let no client function change stored configuration or touch the audit trail', () => {
    for (const name of client) {
      for (const action of writes) {
        expect(may(name, { action, pk: 'config#plan' })).toBe(false);
        expect(may(name, { action, pk: 'audit' })).toBe(false);
      }
      expect(may(name, { action: 'dynamodb:GetItem', pk: 'audit' })).toBe(false);
    }
  });

  it('let no function delete or overwrite-by-put an audit entry, a bucket or a lease', () => {
    for (const name of NAMES) {
      for (const pk of ['audit', 'entity#key-1', 'resource#gpt-4o', 'lease#x']) {
        expect(may(name, { action: 'dynamodb:DeleteItem', pk })).toBe(false);
        expect(may(name, { action: 'dynamodb:PutItem', pk })).toBe(false);
      }
    }
  });

  it('let each function read together, in one BatchGetItem, exactly what it may read alone', () => {
    const pks = [
      'config#plan',
      'config#entity',
      'meta#lease-signing-key',
      'meta#health',
      'meta#usage-progress',
      'meta#other',
      'entity#key-1',
      'resource#gpt-4o',
      'lease#abc',
      'audit',
      'denied#x',
      'usage#key-1',
      'usagetop#d#20260115#0',
      'usagelease#abc',
      'usagelog#2026-01-15T12:00',
      'alert',
    ];
    for (const name of [...NAMES, 'aggregator'] as const) {
      const alone = pks.filter((pk) => may(name, { action: 'dynamodb:GetItem', pk }));
      const batched = pks.filter((pk) => may(name, { action: 'dynamodb:BatchGetItem', pk }));
      expect({ name, batched }).toEqual({ name, batched: alone });
      if (alone.length > 0)
        expect({ name, all: mayBatch(name, alone) }).toEqual({ name, all: true });
      for (const pk of pks.filter((p) => !alone.includes(p)))
        expect({ name, pk, with: mayBatch(name, [...alone, pk]) }).toEqual({
          name,
          pk,
          with: false,
        });
    }
  });

  it('keep the signing keys to the functions that sign, verify or rotate leases', () => {
    const key = { action: 'dynamodb:GetItem', pk: 'meta#lease-signing-key' };
    expect(NAMES.filter((name) => may(name, key)).sort()).toEqual(
      ['acquire', 'adjust', 'admin', 'release'].sort(),
    );
  });

  it('let health read usage history’s progress, and only the aggregator write it', () => {
    const progress = 'meta#usage-progress';
    expect(may('health', { action: 'dynamodb:GetItem', pk: progress })).toBe(true);
    expect(may('aggregator', { action: 'dynamodb:UpdateItem', pk: progress })).toBe(true);
    for (const action of writes)
      expect(NAMES.filter((name) => may(name, { action, pk: progress }))).toEqual([]);
    for (const pk of ['meta#health', 'meta#lease-signing-key', 'meta#other'])
      expect(may('aggregator', { action: 'dynamodb:UpdateItem', pk })).toBe(false);
    expect(may('health', { action: 'dynamodb:GetItem', pk: 'meta#other' })).toBe(false);
  });

  it('keep the log of usage events counted to the aggregator', () => {
    const pk = 'usagelog#2026-01-15T12:00';
    for (const action of ['dynamodb:UpdateItem', 'dynamodb:Query'])
      expect(may('aggregator', { action, pk })).toBe(true);
    for (const action of [...writes, 'dynamodb:Query', 'dynamodb:GetItem'])
      expect(NAMES.filter((name) => may(name, { action, pk }))).toEqual([]);
  });

  it('let settlement write only leases and buckets, and only read configuration (callers)', () => {
    for (const name of ['adjust', 'release'] as const) {
      expect(may(name, { action: 'dynamodb:UpdateItem', pk: 'lease#abc' })).toBe(true);
      expect(may(name, { action: 'dynamodb:GetItem', pk: 'config#entity' })).toBe(true);
      expect(may(name, { action: 'dynamodb:UpdateItem', pk: 'config#entity' })).toBe(false);
      expect(may(name, { action: 'dynamodb:UpdateItem', pk: 'meta#health' })).toBe(false);
    }
  });
});

describe('grantInProcess', () => {
  const SETTLING: FunctionName[] = ['acquire', 'adjust', 'release'];
  const ACTIONS = [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:UpdateItem',
    'dynamodb:PutItem',
    'dynamodb:DeleteItem',
    'dynamodb:ConditionCheckItem',
    'dynamodb:Query',
    'dynamodb:Scan',
  ];
  const PKS = [
    'config#plan',
    'config#entity',
    'meta#lease-signing-key',
    'meta#health',
    'meta#usage-progress',
    'entity#key-1',
    'resource#gpt-4o',
    'lease#abc',
    'audit',
    'denied#x',
    'usage#key-1',
    'usagetop#d#20260115#0',
    'usagelog#2026-01-15T12:00',
    'alert',
  ];

  it('gives exactly what the acquire, adjust and release functions have together', () => {
    for (const action of ACTIONS)
      for (const pk of PKS) {
        const theirs = SETTLING.some((name) => may(name, { action, pk }));
        expect({ action, pk, granted: may(inProcessRole, { action, pk }) }).toEqual({
          action,
          pk,
          granted: theirs,
        });
      }
    // What any of them may read alone, read together in one batch, and nothing more with it.
    const reads = PKS.filter((pk) => may(inProcessRole, { action: 'dynamodb:GetItem', pk }));
    expect(mayBatch(inProcessRole, reads)).toBe(true);
    for (const pk of PKS.filter((p) => !reads.includes(p)))
      expect({ pk, with: mayBatch(inProcessRole, [...reads, pk]) }).toEqual({ pk, with: false });
  });

  it('serves a whole in-process session under the role with nothing refused', async () => {
    const proxy = await startIamProxy(statementsOf(inProcessRole), TABLE, inject('dynamoEndpoint'));
    try {
      const admin = `${api('admin')}/v1/admin`;
      const put = async (path: string, body: unknown) =>
        expect((await request('PUT', `${admin}${path}`, body)).status).toBeLessThan(300);
      await put('/plans/ip-pro', {
        limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }],
        allowed_resources: ['ip-model'],
        fallbacks: { 'ip-gpt-5': ['ip-model'] },
      });
      await put('/entities/ip-org', {});
      await put('/entities/ip-key', { plan: 'ip-pro', parent: 'ip-org' });
      // Sharded: the first acquire splits the scope, under the caller's role.
      await put('/resources/ip-model', {
        price: { input: '2.50', output: '10.00' },
        limits: [
          { name: 'provider_tpm', metric: 'tokens', limit: 1_000_000, per: 'minute', shards: 2 },
        ],
      });
      const sluice = new SluiceClient({
        table,
        dynamodbEndpoint: proxy.url,
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
        configCacheMs: 0,
        denialFlushMs: 0,
        onUnavailable: 'deny',
      });
      const ask = {
        entity: 'ip-key',
        resource: 'ip-model',
        usage: { input_tokens: 1_000, output_tokens: 200 },
      };
      const leaseOf = (answer: Awaited<ReturnType<SluiceClient['acquire']>>) => {
        expect(answer).toMatchObject({ allowed: true, degraded: false });
        return answer.allowed ? answer.leaseId : '';
      };
      const first = leaseOf(await sluice.acquire(ask));
      expect(await sluice.adjust(first, { output_tokens: 300 })).toMatchObject({ settled: false });
      expect(await sluice.release(first, { output_tokens: 350 })).toMatchObject({ settled: true });
      expect(await sluice.available(ask)).toMatchObject({ degraded: false });
      const fell = await sluice.acquire({ ...ask, resource: 'ip-gpt-5' });
      expect(fell).toMatchObject({ allowed: true, resource: 'ip-model', fellBack: true });
      await sluice.release(leaseOf(fell));
      // Leases of the API settled in process, and the reverse, across a key rotation.
      const viaApi = await post(`${api('acquire')}/v1/acquire`, ask);
      const before = leaseOf(await sluice.acquire(ask));
      expect((await request('POST', `${admin}/signing-keys/rotate`)).status).toBe(200);
      await sluice.release(String(viaApi.body.lease_id));
      expect((await post(`${api('release')}/v1/release`, { lease_id: before })).status).toBe(200);
      // A refusal, and its count written by the next acquire.
      const tiny = {
        ...ask,
        limits: [{ name: 'tiny', metric: 'tokens', limit: 10, per: 'day' as const }],
      };
      expect(await sluice.acquire(tiny)).toMatchObject({ allowed: false, degraded: false });
      await sluice.release(leaseOf(await sluice.acquire(ask)));

      expect(proxy.denied).toEqual([]);
      expect(
        proxy.allowed.some(
          (a) => a.action === 'dynamodb:UpdateItem' && a.pk?.startsWith('denied#'),
        ),
      ).toBe(true);
      expect(
        proxy.exchanges.some((e) => {
          const pks = keysRead(e).map((k) => k.pk);
          return e.operation === 'BatchGetItem' && pks.includes('meta#lease-signing-key');
        }),
      ).toBe(true);
      // Usage history is not the grant's: it is read over the API.
      await expect(sluice.usage({ entity: 'ip-key' })).rejects.toThrow();
      expect(proxy.denied.map((d) => d.action)).toEqual(['dynamodb:Query']);
    } finally {
      await proxy.close();
    }
  });
});
