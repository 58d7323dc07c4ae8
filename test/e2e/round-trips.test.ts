/**
 * The round trips a new container's first acquire or settlement waits for, counted behind a
 * recording proxy that holds every answer back 50 ms (so requests sent together overlap for
 * certain). What every first acquire reads whoever calls (the settings, the `default` plan, the
 * lease signing keys) is read as a Lambda container starts, before its first call: each server
 * here is started as in Lambda (`AWS_LAMBDA_FUNCTION_NAME` set). Reads asked for together go
 * as one request (a BatchGetItem), so each round of reads is one request.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { type Api, post, startApi, tableName } from '../support/api.js';
import {
  type Exchange,
  type IamProxy,
  keysRead,
  roundsOf,
  startRecorder,
} from '../support/iam-proxy.js';

const table = tableName('round-trips');
let admin: Api;
let recorder: IamProxy;
beforeAll(async () => {
  [recorder, admin] = await Promise.all([startRecorder(inject('dynamoEndpoint')), startApi(table)]);
});
afterAll(async () => {
  await admin?.stop();
  await recorder?.close();
});

const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }];

/** A key of configuration or of the signing keys (not one of the usage aggregator's reads). */
const callKey = (pk: string) => pk.startsWith('config#') || pk === 'meta#lease-signing-key';

/** The requests that read configuration or the signing keys. */
const callReads = (exchanges: readonly Exchange[]) =>
  exchanges.filter((e) => keysRead(e).some((k) => callKey(k.pk)));

/**
 * The first request of a new server (a new container), every answer held back 50 ms: the reads
 * it sent as it started, and those its first call sent (told apart by when the proxy saw them:
 * the recorder lists a request once it is answered, and the call may find its start's reads
 * still unanswered).
 */
async function onNewServer<T>(call: (url: string) => Promise<T>) {
  const started = recorder.exchanges.length;
  // As in Lambda, where each container serves one function and reads ahead as it starts.
  const fresh = await startApi(table, {
    DYNAMODB_ENDPOINT: recorder.url,
    AWS_LAMBDA_FUNCTION_NAME: 'sluice-local',
  });
  try {
    recorder.delayMs = 50;
    const callMs = performance.now();
    const res = await call(fresh.url);
    const sent = recorder.exchanges.slice(started);
    return {
      res,
      startup: callReads(sent.filter((e) => e.startMs < callMs)),
      reads: callReads(sent.filter((e) => e.startMs >= callMs)),
    };
  } finally {
    recorder.delayMs = 0;
    await fresh.stop();
  }
}

/** The first acquire of a new server (once the signing key exists). */
async function firstAcquire(ask: Record<string, unknown>) {
  expect((await acquire(admin.url, ask)).status).toBe(200); // the signing key exists by now
  return onNewServer((url) => acquire(url, ask));
}

/** Each key the requests read, once per read. */
const keysOf = (reads: readonly Exchange[]) =>
  reads
    .flatMap(keysRead)
    .map((k) => `${k.pk} ${k.sk}`)
    .sort();

it("a new container's first acquire waits for one round of reads, two for a named plan", async () => {
  await put(admin.url, 'plans/rt-plan', { limits });
  await put(admin.url, 'entities/rt-key', { plan: 'rt-plan' });
  await put(admin.url, 'entities/rt-plain-key', { limits });

  // As it starts: the settings, the `default` plan and the signing keys, in one request (read
  // only: a request its policy refuses creates no key).
  const plain = await firstAcquire({
    entity: 'rt-plain-key',
    resource: 'rt-model',
    usage: { input_tokens: 10 },
  });
  expect(plain.res.status).toBe(200);
  expect(keysOf(plain.startup)).toEqual([
    'config#plan default',
    'config#settings settings',
    'meta#lease-signing-key v1',
  ]);
  expect(plain.startup.map((e) => e.operation)).toEqual(['BatchGetItem']);
  // Its first call: the entity and the resource together, in one request, then its write.
  expect(keysOf(plain.reads)).toEqual(['config#entity rt-plain-key', 'config#resource rt-model']);
  expect(plain.reads.map((e) => e.operation)).toEqual(['BatchGetItem']);

  // An entity naming a plan: that plan once its entity is read.
  const named = await firstAcquire({
    entity: 'rt-key',
    resource: 'rt-model',
    usage: { input_tokens: 10 },
  });
  expect(named.res.status).toBe(200);
  expect(keysOf(named.reads)).toEqual([
    'config#entity rt-key',
    'config#plan rt-plan',
    'config#resource rt-model',
  ]);
  expect(named.reads).toHaveLength(2);
  expect(roundsOf(named.reads)).toBe(2);
});

it("looking up the plan's fallbacks adds no round trip to the walk up the hierarchy", async () => {
  await put(admin.url, 'plans/rt-team-plan', { limits, fallbacks: { 'rt-big': ['rt-small'] } });
  await put(admin.url, 'entities/rt-org', {});
  await put(admin.url, 'entities/rt-team-key', { plan: 'rt-team-plan', parent: 'rt-org' });

  const { res, reads } = await firstAcquire({
    entity: 'rt-team-key',
    resource: 'rt-big',
    usage: { input_tokens: 10 },
  });

  expect(res.body).toMatchObject({ allowed: true, resource: 'rt-big', fell_back: false });
  // The key and the resource; then the org and the key's plan together: a request a round.
  expect(keysOf(reads)).toEqual([
    'config#entity rt-org',
    'config#entity rt-team-key',
    'config#plan rt-team-plan',
    'config#resource rt-big',
  ]);
  expect(reads).toHaveLength(2);
  expect(roundsOf(reads)).toBe(2);
});

it('a new container settling a lease reads the ancestors the lease names together', async () => {
  await put(admin.url, 'entities/rt-acme', {});
  await put(admin.url, 'entities/rt-acme-web', { parent: 'rt-acme' });
  await put(admin.url, 'entities/rt-acme-web-key', { parent: 'rt-acme-web', limits });
  const ask = { entity: 'rt-acme-web-key', resource: 'rt-model', usage: { input_tokens: 10 } };
  const acquired = await acquire(admin.url, ask);
  expect(acquired.status).toBe(200);

  const { res, reads } = await onNewServer((url) =>
    post(`${url}/v1/release`, { lease_id: acquired.body.lease_id, usage: { input_tokens: 7 } }),
  );

  expect(res.status).toBe(200);
  // The key, its project and its org together (the walk up the hierarchy as it is now finds them
  // read): one request, not three rounds; the signing keys were read as the container started.
  expect(keysOf(reads)).toEqual([
    'config#entity rt-acme',
    'config#entity rt-acme-web',
    'config#entity rt-acme-web-key',
  ]);
  expect(reads.map((e) => e.operation)).toEqual(['BatchGetItem']);
});
