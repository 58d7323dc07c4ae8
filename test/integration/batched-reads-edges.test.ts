/**
 * The store's reads of one turn sent together, at the edges: what callers of `DynamoDBStore.get`
 * could rely on when each read was its own GetItem (their own items, odd keys, exact numbers,
 * strong consistency, a bound however the batch fares), and IAM refusing some of a batch's keys.
 */
import {
  BatchGetItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBStore, type ItemKey, StoreUnavailableError } from '@sluice/core';
import { SERVICE_DEFAULTS } from '@sluice/core/internal';
import { localClient } from '@sluice/local';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type IamProxy, startIamProxy, startRecorder } from '../support/iam-proxy.js';
import { freshTable, type TestTable } from '../support/table.js';

let table: TestTable;
let recorder: IamProxy;
let store: DynamoDBStore;

beforeAll(async () => {
  [table, recorder] = await Promise.all([
    freshTable('reads-edges'),
    startRecorder(inject('dynamoEndpoint')),
  ]);
  store = new DynamoDBStore({ client: localClient(recorder.url), tableName: table.tableName });
});

afterAll(async () => {
  await recorder?.close();
});

async function putRaw(key: ItemKey, extra: Record<string, unknown> = {}): Promise<void> {
  await table.client.send(
    new PutItemCommand({
      TableName: table.tableName,
      // biome-ignore lint/suspicious/noExplicitAny: raw attribute values
      Item: { pk: { S: key.pk }, sk: { S: key.sk }, ...(extra as any) },
    }),
  );
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

it('gives each caller of the same key its own answer (no aliasing between callers)', async () => {
  const k = { pk: 'alias#1', sk: 's' };
  await putRaw(k, { v: { S: 'original' }, n: { N: '5' } });

  // Two callers in one turn: before 7d4fad7 each got its own object from its own GetItem.
  const [a, b] = await Promise.all([store.get(k), store.get(k)]);
  // A caller that mutates what it got (a JS caller, or a cast)...
  (a as Record<string, unknown>).v = 'changed by caller A';
  // ...changes what the other caller got.
  expect(b?.v).toBe('original');
  expect(a).not.toBe(b);
});

it('gives each caller of the same key its own answer in a batch too', async () => {
  const k = { pk: 'alias#2', sk: 's' };
  const other = { pk: 'alias#3', sk: 's' };
  await putRaw(k, { v: { S: 'original' } });
  await putRaw(other, { v: { S: 'other' } });
  const [a, , b] = await Promise.all([store.get(k), store.get(other), store.get(k)]);
  (a as Record<string, unknown>).v = 'changed by caller A';
  expect(b?.v).toBe('original');
});

it('reads keys with odd characters, long keys and big numbers alike alone and batched', async () => {
  const long = (c: string, bytes: number) => c.repeat(bytes / Buffer.byteLength(c));
  const keys: ItemKey[] = [
    { pk: 'odd##', sk: '#' },
    { pk: 'odd#ünï©ødé ✓ 🚀', sk: '日本語#🚀' },
    { pk: 'odd#"quote\\back\nnl\ttab\u0000nul', sk: '["json",1]' },
    { pk: long('é', 2048), sk: long('🚀', 1024) }, // the longest keys DynamoDB takes
    { pk: 'odd#a', sk: ' ' },
  ];
  for (const [i, k] of keys.entries())
    await putRaw(k, { i: { N: String(i) }, big: { N: '-99999999999999999999999999999999999999' } });

  const alone: unknown[] = [];
  for (const k of keys) alone.push(await store.get(k));
  const batched = await Promise.all(keys.map((k) => store.get(k)));
  expect(batched).toEqual(alone);
  expect(batched.map((item) => item?.i)).toEqual(keys.map((_, i) => BigInt(i)));
  expect(batched[0]?.big).toBe(-99999999999999999999999999999999999999n);
});

it('reads a key with a lone surrogate alike alone and batched', async () => {
  const k = { pk: 'odd#lone\uD800', sk: 's' };
  const other = { pk: 'odd#plain-for-lone', sk: 's' };
  await putRaw(k, { v: { S: 'lone' } });
  await putRaw(other, { v: { S: 'plain' } });
  const alone = await store.get(k);
  const batched = await Promise.all([store.get(k), store.get(other)]);
  expect(batched[0]).toEqual(alone);
});

it('sees a write just answered, in a batch as alone (strongly consistent)', async () => {
  const k = { pk: 'consistent#1', sk: 's' };
  const others = Array.from({ length: 5 }, (_, i) => ({ pk: `consistent#o${i}`, sk: 's' }));
  for (let n = 1n; n <= 20n; n++) {
    await store.update({ key: k, set: [{ attr: 'n', value: n }] });
    const [item] = await Promise.all([store.get(k), ...others.map((o) => store.get(o))]);
    expect(item?.n).toBe(n);
  }
});

it('fails every read of a batch whose unprocessed keys never get answered, within the bound', async () => {
  // A client on which DynamoDB leaves every key unprocessed (throttled) for ever.
  let batches = 0;
  const client = {
    send(command: unknown, options?: { abortSignal?: AbortSignal }) {
      const signal = options?.abortSignal;
      return new Promise((resolve, reject) => {
        if (signal?.aborted)
          return reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        signal?.addEventListener('abort', () =>
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' })),
        );
        setTimeout(() => {
          if (command instanceof BatchGetItemCommand) {
            batches++;
            const input = command.input.RequestItems ?? {};
            resolve({
              Responses: Object.fromEntries(Object.keys(input).map((t) => [t, []])),
              UnprocessedKeys: input,
            });
          } else if (command instanceof GetItemCommand) resolve({});
          else reject(new Error('unexpected'));
        }, 5);
      });
    },
  } as unknown as DynamoDBClient;
  const throttled = new DynamoDBStore({ client, tableName: 't' });
  const t0 = Date.now();
  const reads = ['a', 'b', 'c'].map((pk) =>
    throttled.get({ pk, sk: 's' }).then(
      () => ({ ok: true, ms: Date.now() - t0 }),
      (error: unknown) => ({ ok: false, error, ms: Date.now() - t0 }),
    ),
  );
  const outcomes = await Promise.all(reads);
  for (const outcome of outcomes) {
    expect(outcome.ok).toBe(false);
    expect((outcome as { error: unknown }).error).toBeInstanceOf(StoreUnavailableError);
    expect(outcome.ms).toBeGreaterThanOrEqual(SERVICE_DEFAULTS.storeRequestTimeoutMs - 50);
    expect(outcome.ms).toBeLessThan(SERVICE_DEFAULTS.storeRequestTimeoutMs + 500);
  }
  expect(batches).toBeGreaterThan(5);
}, 20_000);

it('leaves no unhandled rejection when every caller of a failing batch stopped listening', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    recorder.hold(/unlistened#/, Number.POSITIVE_INFINITY);
    // Each caller races its read against a short timer and goes away.
    const raced = ['unlistened#a', 'unlistened#b', 'unlistened#a'].map((pk) =>
      Promise.race([
        store.get({ pk, sk: 's' }),
        new Promise((resolve) => setTimeout(resolve, 50, 'gave up')),
      ]),
    );
    expect(await Promise.all(raced)).toEqual(['gave up', 'gave up', 'gave up']);
    await new Promise((resolve) =>
      setTimeout(resolve, SERVICE_DEFAULTS.storeRequestTimeoutMs + 500),
    );
    await turn();
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
}, 20_000);

it('answers the permitted keys of a batch IAM refuses for another key, key by key', async () => {
  const proxy = await startIamProxy(
    [
      {
        Effect: 'Allow',
        Action: ['dynamodb:GetItem'],
        Resource: 'table',
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['ok#*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:BatchGetItem'],
        Resource: 'table',
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['ok#*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:BatchGetItem'],
        Resource: 'table',
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['also#*'] } },
      },
    ],
    'table',
    inject('dynamoEndpoint'),
  );
  try {
    const limited = new DynamoDBStore({
      client: localClient(proxy.url),
      tableName: table.tableName,
    });
    await putRaw({ pk: 'ok#1', sk: 's' }, { v: { S: 'ok' } });
    expect((await limited.get({ pk: 'ok#1', sk: 's' }))?.v).toBe('ok');
    await expect(limited.get({ pk: 'no#1', sk: 's' })).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    // Mixed: the batch is refused whole (each statement separately allows a part, none allows
    // all), and nothing reaches DynamoDB; read again key by key, the permitted one is answered.
    const mixed = await Promise.allSettled([
      limited.get({ pk: 'ok#1', sk: 's' }),
      limited.get({ pk: 'also#1', sk: 's' }),
    ]);
    expect(mixed.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect(proxy.exchanges.filter((e) => e.operation === 'BatchGetItem')).toHaveLength(0);
    // Wildcards: '*' matches any run, so `ok` alone is not `ok#*`.
    const wild = await Promise.allSettled([
      limited.get({ pk: 'ok#2', sk: 's' }),
      limited.get({ pk: 'ok', sk: 's' }),
    ]);
    expect(wild.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
  } finally {
    await proxy.close();
  }
});

it('answers an update racing a read of the same key in one turn either way, never a torn item', async () => {
  const k = { pk: 'race#1', sk: 's' };
  await table.client.send(
    new UpdateItemCommand({
      TableName: table.tableName,
      Key: { pk: { S: k.pk }, sk: { S: k.sk } },
      UpdateExpression: 'SET a = :one, b = :one',
      ExpressionAttributeValues: { ':one': { N: '1' } },
    }),
  );
  const [read] = await Promise.all([
    store.get(k),
    store.update({
      key: k,
      set: [
        { attr: 'a', value: 2n },
        { attr: 'b', value: 2n },
      ],
    }),
    store.get({ pk: 'race#other', sk: 's' }),
  ]);
  expect(read?.a).toBe(read?.b);
});
