/**
 * `npm start` serves every request in one process, many at once: acquires that meet on one
 * shared item combine their writes. Counted behind a recording proxy that holds every answer
 * back 50 ms, so the calls overlap for certain.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { type Api, startApi, tableName } from '../support/api.js';
import { type IamProxy, startRecorder } from '../support/iam-proxy.js';

let api: Api;
let recorder: IamProxy;
beforeAll(async () => {
  recorder = await startRecorder(inject('dynamoEndpoint'));
  api = await startApi(tableName('combining'), { DYNAMODB_ENDPOINT: recorder.url });
});
afterAll(async () => {
  await api?.stop();
  await recorder?.close();
});

it("admits exactly an organisation's limit to its keys' concurrent calls, in a few writes", async () => {
  await put(api.url, 'entities/cb-org', {
    limits: [{ name: 'org-rpm', metric: 'requests', limit: 10, per: 'minute' }],
  });
  const keys = Array.from({ length: 24 }, (_, i) => `cb-key-${i}`);
  await Promise.all(
    keys.map((key) =>
      put(api.url, `entities/${key}`, {
        parent: 'cb-org',
        limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
      }),
    ),
  );
  // Every configuration read once, so that the calls below reach the org's item together.
  await acquire(api.url, { entity: 'cb-org', resource: 'cb-model', usage: {}, priority: 1 });
  await Promise.all(
    keys.map((key) =>
      acquire(api.url, { entity: key, resource: 'other-model', usage: {}, priority: 1 }),
    ),
  );

  const from = recorder.exchanges.length;
  recorder.delayMs = 50;
  const answers = await Promise.all(
    keys.map((key) => acquire(api.url, { entity: key, resource: 'cb-model', usage: {} })),
  );
  recorder.delayMs = 0;

  expect(answers.filter((a) => a.status === 200)).toHaveLength(10);
  expect(answers.filter((a) => a.status === 429)).toHaveLength(14);
  const orgWrites = recorder.exchanges
    .slice(from)
    .filter((e) => e.operation === 'UpdateItem' && e.pk === 'entity#cb-org');
  // One write per admitted call would be 10, and more with the writes bound to fail.
  expect(orgWrites.length).toBeLessThanOrEqual(4);
});
