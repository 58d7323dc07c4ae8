/**
 * A DynamoDB that stops answering (paused with SIGSTOP for longer than a request may run), with
 * the local server as `npm start` runs it: every request answers a 503 problem+json with
 * Retry-After before its deadline (never a 500), a caller's own timeout bounds the work too, and
 * once DynamoDB is back nothing stays charged for the calls that were refused.
 */
import { DynamoDBStore, itemAttributes, itemKeys } from '@sluice/core';
import { type DynamoDBLocal, localClient, startDynamoDBLocal } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

let db: DynamoDBLocal;
let api: Api;
let table: DynamoDBStore;
const limits = [{ name: 'tpd', metric: 'tokens', limit: 10_000, window: 'day' }];

beforeAll(async () => {
  db = await startDynamoDBLocal(); // its own: this file pauses it
  const name = tableName('stall');
  api = await startApi(name, {
    DYNAMODB_ENDPOINT: db.endpoint,
    SLUICE_FUNCTION_TIMEOUT_MS: '1500',
  });
  table = new DynamoDBStore({ client: localClient(db.endpoint), tableName: name });
});

afterAll(async () => {
  if (db.pid) process.kill(db.pid, 'SIGCONT');
  await api?.stop();
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
