/**
 * Requests DynamoDB takes but never answers (a connection that hangs, with DynamoDB healthy for
 * everything else). A read other calls share (the lease signing keys' first read, a stored
 * configuration document's) holds no later call: a caller waits on one a few seconds at most
 * before the next one reads again. A settlement whose answer was lost, repeated, answers with
 * the limits the table holds, not the process's memory from before it.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type Api, post, startApi, tableName } from '../support/api.js';
import { type IamProxy, startRecorder } from '../support/iam-proxy.js';

const ask = (entity: string) => ({
  entity,
  resource: 'gpt-4o',
  usage: { tokens: 10 },
  limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }],
});
const timed = async <T>(call: Promise<T>) => {
  const t0 = Date.now();
  const answer = await call;
  return { answer, ms: Date.now() - t0 };
};

let proxy: IamProxy;
let table: string;

beforeAll(async () => {
  table = tableName('hung-reads');
  const seed = await startApi(table); // writes the table's signing key
  expect((await post(`${seed.url}/v1/acquire`, ask('seed'))).status).toBe(200);
  await seed.stop();
  proxy = await startRecorder(inject('dynamoEndpoint'));
});

afterAll(async () => {
  await proxy?.close();
});

/** A new process (cold: it has read nothing) reaching DynamoDB through the proxy. */
async function coldApi(env: Record<string, string> = {}): Promise<Api> {
  return startApi(table, { DYNAMODB_ENDPOINT: proxy.url, ...env });
}

it("a cold process whose signing keys' first read hangs answers the next acquire", async () => {
  const api = await coldApi();
  try {
    proxy.hold(/meta#lease-signing-key/, Number.POSITIVE_INFINITY); // its first read, never answered
    const first = await timed(post(`${api.url}/v1/acquire`, ask('first')));
    expect([200, 503]).toContain(first.answer.status);
    expect(first.ms).toBeLessThan(6_000);
    const next = await timed(post(`${api.url}/v1/acquire`, ask('next')));
    expect(next.answer.status).toBe(200); // before: 503 after ~10 s, every acquire of the process
  } finally {
    await api.stop();
  }
}, 60_000);

it('a configuration read that hangs is not shared past a few seconds', async () => {
  const api = await coldApi();
  try {
    // Warm up the process (signing keys, settings), then hang the first read of a new entity.
    expect((await post(`${api.url}/v1/acquire`, ask('warm'))).status).toBe(200);
    proxy.hold(/config#entity[\s\S]*late-key/, Number.POSITIVE_INFINITY);
    const stuck = timed(post(`${api.url}/v1/acquire`, ask('late-key')));
    await new Promise((resolve) => setTimeout(resolve, 3_300));
    const later = await timed(post(`${api.url}/v1/acquire`, ask('late-key')));
    expect(later.answer.status).toBe(200); // it read the entity again, not waiting on the hung read
    expect(later.ms).toBeLessThan(1_500);
    const first = await stuck;
    expect(first.answer.status).toBe(503); // the hung request itself fails, before its deadline
  } finally {
    await api.stop();
  }
}, 60_000);

it('a settlement repeated after its answer was lost answers with the limits the table holds', async () => {
  // A write is waited for until the call's deadline (here 2 s in), then answered 503.
  const api = await coldApi({ SLUICE_FUNCTION_TIMEOUT_MS: '2500' });
  try {
    const tph = [{ name: 'tph', metric: 'tokens', limit: 100, per: 'hour' }];
    const acquire = (entity: string) =>
      post(`${api.url}/v1/acquire`, { entity, resource: 'm', usage: { tokens: 50 }, limits: tph });
    const remaining = (answer: { body: Record<string, unknown> }) =>
      (answer.body.limits as { remaining: number }[])[0]?.remaining;
    // As answered when nothing is lost: 50 taken, 10 used.
    const plain = await acquire('settle-plain');
    const released = await post(`${api.url}/v1/release`, {
      lease_id: plain.body.lease_id,
      usage: { tokens: 10 },
    });
    expect(remaining(released)).toBe(90);

    const lost = await acquire('settle-lost');
    proxy.hold(/TransactItems/, Number.POSITIVE_INFINITY); // applied, never answered
    const first = await post(`${api.url}/v1/adjust`, {
      lease_id: lost.body.lease_id,
      usage: { tokens: 70 },
    });
    expect(first.status).toBe(503);
    const adjusted = await post(`${api.url}/v1/adjust`, {
      lease_id: lost.body.lease_id,
      usage: { tokens: 70 },
    });
    expect(adjusted.status).toBe(200);
    expect(remaining(adjusted)).toBe(30); // was 50: the memory from before the adjust

    proxy.hold(/TransactItems/, Number.POSITIVE_INFINITY);
    const release = { lease_id: lost.body.lease_id, usage: { tokens: 10 } };
    expect((await post(`${api.url}/v1/release`, release)).status).toBe(503);
    const again = await post(`${api.url}/v1/release`, release);
    expect(again.status).toBe(200);
    expect(remaining(again)).toBe(90); // as the first release would have answered
  } finally {
    await api.stop();
  }
}, 60_000);

it('a Lambda container whose init reads hang answers its first acquire once it reads again', async () => {
  // The reads a container starts in its init (the settings, the `default` plan and the signing
  // keys, in one request) never answered.
  const heldBefore = proxy.held();
  const initReads = /^(?=[\s\S]*config#settings)(?=[\s\S]*"S":"default")(?=[\s\S]*signing-key)/;
  proxy.hold(initReads, Number.POSITIVE_INFINITY);
  const api = await startApi(table, {
    DYNAMODB_ENDPOINT: proxy.url,
    AWS_LAMBDA_FUNCTION_NAME: 'sluice-hung-init',
  });
  try {
    const first = await timed(post(`${api.url}/v1/acquire`, ask('after-hung-init')));
    expect(proxy.held() - heldBefore).toBe(1);
    // It waited on the init's reads a few seconds at most, then read for itself.
    expect(first.answer.status).toBe(200); // was a 503 once the store's own timeout failed them
    expect(first.ms).toBeLessThan(4_500);
  } finally {
    await api.stop();
  }
}, 60_000);
