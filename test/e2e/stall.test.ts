/**
 * A DynamoDB that stops answering (paused with SIGSTOP for longer than a request may run), with
 * the local server as `npm start` runs it: every request answers a 503 problem+json with
 * Retry-After before its deadline (never a 500), a caller's own timeout bounds the work too, and
 * once DynamoDB is back nothing stays charged for the calls that were refused. The caller's
 * timeout bounds adjust, release and usage history as well, long before the function's own
 * timeout, on a server that has read the lease's entity and on one that has not.
 */
import { DynamoDBStore, itemKeys } from '@sluice/core';
import { itemAttributes } from '@sluice/core/internal';
import { type DynamoDBLocal, localClient, startDynamoDBLocal } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

let db: DynamoDBLocal;
let api: Api;
/** On the same table, with a function timeout (6 s) far longer than its callers wait. */
let patient: Api;
let table: DynamoDBStore;
const limits = [{ name: 'tpd', metric: 'tokens', limit: 10_000, window: 'day' }];

beforeAll(async () => {
  db = await startDynamoDBLocal(); // its own: this file pauses it
  const name = tableName('stall');
  [api, patient] = await Promise.all([
    startApi(name, { DYNAMODB_ENDPOINT: db.endpoint, SLUICE_FUNCTION_TIMEOUT_MS: '1500' }),
    startApi(name, { DYNAMODB_ENDPOINT: db.endpoint, SLUICE_FUNCTION_TIMEOUT_MS: '6000' }),
  ]);
  table = new DynamoDBStore({ client: localClient(db.endpoint), tableName: name });
});

afterAll(async () => {
  if (db.pid) process.kill(db.pid, 'SIGCONT');
  await Promise.all([api?.stop(), patient?.stop()]);
  await db?.stop();
});

const acquire = (entity: string, headers: Record<string, string> = {}) =>
  request(
    'POST',
    `${api.url}/v1/acquire`,
    { entity, resource: 'gpt-4o', usage: { tokens: 1_000 }, limits },
    'application/json',
    headers,
  );

const remainingOf = async (entity: string) => {
  const answer = await post(`${api.url}/v1/available`, { entity, resource: 'gpt-4o', limits });
  return (answer.body.limits as { remaining: number }[] | undefined)?.[0]?.remaining;
};

describe('a DynamoDB that stops answering', () => {
  it('gets 503s with Retry-After, and leaves nothing charged for them once it is back', async () => {
    expect((await acquire('stall-a')).status).toBe(200); // its configuration is now cached
    const item = itemKeys.entityBucket('stall-a', 'gpt-4o');
    const lastWrite = async () => (await table.get(item))?.[itemAttributes.lastWrites[0]];
    const before = await lastWrite();
    const pid = db.pid as number;

    process.kill(pid, 'SIGSTOP');
    const answers = await Promise.all([
      acquire('stall-a'), // gets as far as its write, which waits in DynamoDB's socket
      acquire('stall-b'), // waits on reading its configuration
      acquire('stall-c', { 'x-sluice-timeout-ms': '500' }), // its caller waits half a second
      request('GET', `${api.url}/v1/health`),
    ]);
    process.kill(pid, 'SIGCONT');

    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.headers.get('content-type')).toBe('application/problem+json');
      expect(answer.headers.get('retry-after')).toBe('1');
      expect(answer.body).toMatchObject({ code: 'unavailable' });
    }
    // The write that waited lands now, and is given back: the item's last write is then the
    // give-back, and only the first call's 1,000 tokens stay charged.
    await expect
      .poll(
        async () => (await lastWrite()) !== before && (await remainingOf('stall-a')) === 9_000,
        {
          timeout: 30_000,
        },
      )
      .toBe(true);
    expect(await remainingOf('stall-b')).toBe(10_000);
    expect(await remainingOf('stall-c')).toBe(10_000);
    expect((await acquire('stall-b')).status).toBe(200);
  });
});

describe('settling and reading usage while DynamoDB stops answering', () => {
  /** A lease of `entity` taken on `server`. */
  const lease = async (server: Api, entity: string) => {
    const answer = await post(`${server.url}/v1/acquire`, {
      entity,
      resource: 'gpt-4o',
      usage: { tokens: 100 },
      limits,
    });
    expect(answer.status).toBe(200);
    return answer.body.lease_id;
  };
  /** One request to the patient server from a caller that waits 500 ms, and how long it took. */
  const timed = async (what: string, path: string, body?: unknown) => {
    const started = Date.now();
    const answer = await request(
      body === undefined ? 'GET' : 'POST',
      `${patient.url}${path}`,
      body,
      'application/json',
      { 'x-sluice-timeout-ms': '500' },
    );
    return { what, answer, ms: Date.now() - started };
  };

  it("answer 503 within the caller's timeout, long before the function's, warm or cold", async () => {
    // The patient server holds the signing keys (it settled a lease) and has read the entity
    // `settle-warm`, not `settle-cold`, whose leases the other server gave.
    const settled = await lease(patient, 'settle-warm');
    expect((await post(`${patient.url}/v1/release`, { lease_id: settled })).status).toBe(200);
    const warm = [await lease(patient, 'settle-warm'), await lease(patient, 'settle-warm')];
    const cold = [await lease(api, 'settle-cold'), await lease(api, 'settle-cold')];
    const pid = db.pid as number;

    process.kill(pid, 'SIGSTOP');
    const answers = await Promise.all([
      timed('warm adjust', '/v1/adjust', { lease_id: warm[0], usage: { tokens: 200 } }),
      timed('warm release', '/v1/release', { lease_id: warm[1] }),
      timed('warm usage', '/v1/usage?entity=settle-warm'),
      timed('cold adjust', '/v1/adjust', { lease_id: cold[0], usage: { tokens: 200 } }),
      timed('cold release', '/v1/release', { lease_id: cold[1] }),
      timed('cold usage', '/v1/usage?entity=settle-cold'),
    ]);
    process.kill(pid, 'SIGCONT');

    for (const { what, answer, ms } of answers) {
      expect(answer.status, what).toBe(503);
      expect(answer.headers.get('content-type'), what).toBe('application/problem+json');
      expect(answer.body, what).toMatchObject({ code: 'unavailable' });
      // The caller's 500 ms and a margin for a busy machine; the function's timeout is 6,000.
      expect(ms, what).toBeLessThan(3_000);
    }
  });
});
