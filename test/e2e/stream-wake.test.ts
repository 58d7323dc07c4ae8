/**
 * `npm start`'s stream reader as the server drives it: quiet, it reads less and less often; an
 * acquire, adjust or release wakes it, so usage history follows at once; requests that write
 * nothing it counts (reads, a route that does not exist) never wake it; and a stream request
 * left unanswered fails after the store's timeout, and is read again: usage history goes on.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';
import { type IamProxy, startRecorder } from '../support/iam-proxy.js';

let proxy: IamProxy;
let api: Api;
const limits = [{ name: 'tph', metric: 'tokens', limit: 1_000_000, per: 'hour' }];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const STREAM_READS = new Set(['DescribeStream', 'GetShardIterator', 'GetRecords']);
const streamRequests = () => proxy.exchanges.filter((e) => STREAM_READS.has(e.operation)).length;

beforeAll(async () => {
  proxy = await startRecorder(inject('dynamoEndpoint'));
  api = await startApi(tableName('stream-wake'), { DYNAMODB_ENDPOINT: proxy.url });
});

afterAll(async () => {
  await api?.stop();
  await proxy?.close();
});

const rowsOf = async (entity: string) =>
  (
    (await request('GET', `${api.url}/v1/usage?entity=${entity}&granularity=hour`)).body
      .items as unknown[]
  ).length;

async function settle(entity: string): Promise<void> {
  const got = await post(`${api.url}/v1/acquire`, {
    entity,
    resource: 'm',
    usage: { tokens: 5 },
    limits,
  });
  expect(got.status).toBe(200);
  const released = await post(`${api.url}/v1/release`, {
    lease_id: got.body.lease_id,
    usage: { tokens: 5 },
  });
  expect(released.status).toBe(200);
}

it('reads no more often for requests that write nothing it counts', async () => {
  await settle('first');
  await expect.poll(() => rowsOf('first'), { timeout: 15_000 }).toBe(1);
  await sleep(4_000); // quiet: its pauses have grown to 2 s
  const before = streamRequests();
  const t0 = Date.now();
  while (Date.now() - t0 < 3_000) {
    expect(
      (await post(`${api.url}/v1/available`, { entity: 'first', resource: 'm', limits })).status,
    ).toBe(200);
    const missing = await fetch(`${api.url}/v1/no-such-route`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(404);
  }
  // Two or three quiet passes of a few requests each; woken by each of these, hundreds.
  expect(streamRequests() - before).toBeLessThan(20);
}, 60_000);

it('counts a settled lease at once after a quiet spell', async () => {
  await sleep(4_000);
  const t0 = Date.now();
  await settle('woken');
  await expect.poll(() => rowsOf('woken'), { timeout: 15_000, interval: 50 }).toBe(1);
  expect(Date.now() - t0).toBeLessThan(1_500); // not after the 2 s pause it was in
}, 60_000);

it('reads again after a stream request that is never answered', async () => {
  await sleep(3_000);
  proxy.hold(/"Limit":1000/, Number.POSITIVE_INFINITY); // the next GetRecords hangs
  await settle('after-hang');
  // The hung read fails after 5 s; the reader reads again from where it was.
  await expect.poll(() => rowsOf('after-hang'), { timeout: 20_000, interval: 200 }).toBe(1);
  expect(proxy.held()).toBe(1);
}, 60_000);
