import { type AcquireRequest, SluiceClient, SluiceRequestError } from '@sluice/client';
import { type DynamoDBLocal, startDynamoDBLocal } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, startApi, tableName } from '../support/api.js';

let db: DynamoDBLocal;
let api: Api;
beforeAll(async () => {
  db = await startDynamoDBLocal(); // this file's own, so it can be stopped
  api = await startApi(tableName('outage'), { DYNAMODB_ENDPOINT: db.endpoint });
  await db.stop();
});
afterAll(async () => {
  await api?.stop();
});

/** Real fetch, counted. */
function countingFetch() {
  const calls: string[] = [];
  const f: typeof fetch = async (input, init) => {
    calls.push(String(input));
    return fetch(input, init);
  };
  return { calls, fetch: f };
}

const body: AcquireRequest = {
  entity: 'k',
  resource: 'm',
  usage: {},
  limits: [{ name: 'r', metric: 'requests', limit: 5, per: 'minute' }],
};

describe('when DynamoDB cannot be reached', () => {
  it('answers 503 unavailable and says nothing of the cause', async () => {
    const res = await post(`${api.url}/v1/acquire`, body);

    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ code: 'unavailable' });
    expect(JSON.stringify(res.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|dynamodb|stack/i);
  });

  it('makes the SDK retry the 5xx within its deadline, then fail as configured', async () => {
    const counted = countingFetch();
    const sluice = new SluiceClient({
      endpoint: api.url,
      retries: 2,
      timeoutMs: 10_000,
      onUnavailable: 'deny',
      fetch: counted.fetch,
    });

    const result = await sluice.acquire(body);

    expect(result).toMatchObject({ allowed: false, code: 'unavailable', degraded: true });
    expect(counted.calls).toHaveLength(3);
  });

  it('never retries a 4xx: bad input throws at once, naming the field', async () => {
    const counted = countingFetch();
    const sluice = new SluiceClient({ endpoint: api.url, retries: 2, fetch: counted.fetch });

    const error = await sluice.acquire({ ...body, usage: { tokens: -1 } }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(SluiceRequestError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_request', field: 'usage.tokens' });
    expect(counted.calls).toHaveLength(1);
  });
});
