/**
 * The round trips a new container's first acquire waits for, counted behind a recording proxy
 * that holds every answer back 50 ms (so requests sent together overlap for certain).
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { type Api, startApi, tableName } from '../support/api.js';
import { type IamProxy, roundsOf, startIamProxy } from '../support/iam-proxy.js';

const table = tableName('round-trips');
let admin: Api;
let recorder: IamProxy;
beforeAll(async () => {
  const everything = {
    Action: ['GetItem', 'UpdateItem', 'ConditionCheckItem', 'Query', 'DeleteItem', 'PutItem']
      .concat(['DescribeStream', 'GetShardIterator', 'GetRecords', 'ListStreams'])
      .map((action) => `dynamodb:${action}`),
    Resource: 'table',
  };
  [recorder, admin] = await Promise.all([
    startIamProxy([everything], 'table', inject('dynamoEndpoint')),
    startApi(table),
  ]);
});
afterAll(async () => {
  await admin?.stop();
  await recorder?.close();
});

it('a new container reads the lease signing key alongside its configuration', async () => {
  const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }];
  await put(admin.url, 'plans/rt-plan', { limits });
  await put(admin.url, 'entities/rt-key', { plan: 'rt-plan' });
  const ask = { entity: 'rt-key', resource: 'rt-model', usage: { input_tokens: 10 } };
  expect((await acquire(admin.url, ask)).status).toBe(200); // the signing key exists by now
  const fresh = await startApi(table, { DYNAMODB_ENDPOINT: recorder.url });
  try {
    const from = recorder.exchanges.length;
    recorder.delayMs = 50;

    const res = await acquire(fresh.url, ask);

    expect(res.status).toBe(200);
    // (The server's usage aggregator reads lease records of its own accord: not the acquire's.)
    const reads = recorder.exchanges
      .slice(from)
      .filter(
        (e) =>
          e.operation === 'GetItem' &&
          (e.pk?.startsWith('config#') || e.pk === 'meta#lease-signing-key'),
      );
    // Entity, settings, resource and the signing key together; then the plan the entity names.
    expect(reads.map((e) => e.pk).sort()).toEqual([
      'config#entity',
      'config#plan',
      'config#resource',
      'config#settings',
      'meta#lease-signing-key',
    ]);
    expect(roundsOf(reads)).toBe(2);
  } finally {
    recorder.delayMs = 0;
    await fresh.stop();
  }
});
