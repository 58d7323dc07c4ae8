/**
 * The store's reads coalesced, on DynamoDB Local behind the recording proxy (which counts the
 * requests and can hold an answer back): the items asked for in one turn of the event loop go as
 * one BatchGetItem, each key once; a read alone is the GetItem it always was; more than 100 keys
 * go in several requests; the keys DynamoDB leaves unprocessed (its answers stop at 16 MB) are
 * asked for again until answered; a batch that hangs fails each of its callers after the bound of
 * every read, and one DynamoDB refuses fails each of its callers as a read alone fails.
 */
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBStore, type ItemKey, SluiceError, StoreUnavailableError } from '@sluice/core';
import { SERVICE_DEFAULTS } from '@sluice/core/internal';
import { localClient } from '@sluice/local';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type Exchange, type IamProxy, keysRead, startRecorder } from '../support/iam-proxy.js';
import { freshTable, type TestTable } from '../support/table.js';

let table: TestTable;
let recorder: IamProxy;
/** The table through the recorder: every request it sends is counted. */
let store: DynamoDBStore;

beforeAll(async () => {
  [table, recorder] = await Promise.all([
    freshTable('batched-reads'),
    startRecorder(inject('dynamoEndpoint')),
  ]);
  store = new DynamoDBStore({ client: localClient(recorder.url), tableName: table.tableName });
});

afterAll(async () => {
  await recorder?.close();
});

const key = (name: string): ItemKey => ({ pk: `batch#${name}`, sk: 's' });

/** Writes `name`'s item (straight to DynamoDB Local, not through the recorder). */
async function put(name: string, value = name): Promise<void> {
  await table.client.send(
    new PutItemCommand({
      TableName: table.tableName,
      Item: { pk: { S: key(name).pk }, sk: { S: 's' }, v: { S: value } },
    }),
  );
}

/** What `read` sent: each request's operation and the keys it read. */
async function sentBy<T>(read: () => Promise<T>): Promise<{ answer: T; sent: Exchange[] }> {
  const from = recorder.exchanges.length;
  const answer = await read();
  // The recorder lists requests as they are answered: in the order they were sent here.
  return { answer, sent: recorder.exchanges.slice(from).sort((a, b) => a.startMs - b.startMs) };
}

const names = (exchange: Exchange) => keysRead(exchange).map((k) => k.pk.replace('batch#', ''));

it('sends the reads of one turn as one BatchGetItem, a read alone as a GetItem', async () => {
  await Promise.all(['a', 'b', 'c'].map((name) => put(name)));

  const together = await sentBy(() =>
    Promise.all(['a', 'b', 'c', 'absent'].map((name) => store.get(key(name)))),
  );
  expect(together.answer.map((item) => item?.v)).toEqual(['a', 'b', 'c', undefined]);
  expect(together.sent.map((e) => e.operation)).toEqual(['BatchGetItem']);
  expect(names(together.sent[0] as Exchange)).toEqual(['a', 'b', 'c', 'absent']);

  const alone = await sentBy(() => store.get(key('b')));
  expect(alone.answer).toEqual({ pk: 'batch#b', sk: 's', v: 'b' });
  expect(alone.sent.map((e) => [e.operation, e.pk])).toEqual([['GetItem', 'batch#b']]);
  expect((await sentBy(() => store.get(key('absent')))).answer).toBeUndefined();

  // A read asked for once the turn that asked for another has ended goes on its own.
  const apart = await sentBy(async () => {
    const first = store.get(key('a'));
    await new Promise((resolve) => setImmediate(resolve));
    return Promise.all([first, store.get(key('c'))]);
  });
  expect(apart.answer.map((item) => item?.v)).toEqual(['a', 'c']);
  expect(apart.sent.map((e) => e.operation)).toEqual(['GetItem', 'GetItem']);
});

it('reads a key asked for twice in one turn once, and answers every caller', async () => {
  await Promise.all(['d', 'e'].map((name) => put(name)));

  const batch = await sentBy(() =>
    Promise.all(['d', 'e', 'd', 'absent', 'd', 'absent'].map((name) => store.get(key(name)))),
  );
  expect(batch.answer.map((item) => item?.v)).toEqual(['d', 'e', 'd', undefined, 'd', undefined]);
  expect(batch.sent).toHaveLength(1);
  expect(names(batch.sent[0] as Exchange)).toEqual(['d', 'e', 'absent']);

  // One key, however many callers: the GetItem a read alone is.
  const same = await sentBy(() => Promise.all([store.get(key('e')), store.get(key('e'))]));
  expect(same.answer.map((item) => item?.v)).toEqual(['e', 'e']);
  expect(same.sent.map((e) => [e.operation, e.pk])).toEqual([['GetItem', 'batch#e']]);
});

it('reads more than 100 keys in requests of 100 at most', async () => {
  const all = Array.from({ length: 250 }, (_, i) => `many-${i}`);
  const written = all.filter((_, i) => i % 10 === 0);
  await Promise.all(written.map((name) => put(name)));

  const { answer, sent } = await sentBy(() => Promise.all(all.map((name) => store.get(key(name)))));

  expect(answer.map((item) => item?.v)).toEqual(
    all.map((n) => (written.includes(n) ? n : undefined)),
  );
  expect(sent.every((e) => e.operation === 'BatchGetItem')).toBe(true);
  // Sent together: in whichever order they arrive.
  expect(sent.map((e) => keysRead(e).length).sort((a, b) => b - a)).toEqual([100, 100, 50]);
  expect(sent.flatMap(names).sort()).toEqual([...all].sort()); // each key once
});

it('asks again for the keys DynamoDB left unprocessed until every one is answered', async () => {
  // 60 items of 390 KB: more than the 16 MB one BatchGetItem answers, so DynamoDB (Local too)
  // answers part of them and names the rest in UnprocessedKeys.
  const big = Array.from({ length: 60 }, (_, i) => `big-${i}`);
  const value = (name: string) => name.padEnd(390_000, '.');
  for (let i = 0; i < big.length; i += 10)
    await Promise.all(big.slice(i, i + 10).map((name) => put(name, value(name))));

  const { answer, sent } = await sentBy(() => Promise.all(big.map((name) => store.get(key(name)))));

  expect(answer.map((item) => item?.v)).toEqual(big.map(value));
  expect(sent.length).toBeGreaterThan(1);
  expect(sent.every((e) => e.operation === 'BatchGetItem')).toBe(true);
  expect(names(sent[0] as Exchange)).toEqual(big);
  // Each request after the first asks only for what the one before left unanswered.
  for (let i = 1; i < sent.length; i++) {
    const asked = names(sent[i] as Exchange);
    const before = names(sent[i - 1] as Exchange);
    expect(asked.length).toBeLessThan(before.length);
    expect(before).toEqual(expect.arrayContaining(asked));
  }
  expect(new Set(sent.flatMap(names)).size).toBe(big.length);
});

it('fails each read of a batch left unanswered after the bound of every read', async () => {
  await Promise.all(['f', 'g'].map((name) => put(name)));
  recorder.hold(/batch#hung/, Number.POSITIVE_INFINITY); // applied, never answered
  const t0 = Date.now();

  const hung = ['hung', 'f'].map((name) => {
    const read = store.get(key(name));
    read.catch(() => {}); // awaited below
    return read;
  });
  // A read of a later turn goes on its own, answered while the batch hangs.
  await new Promise((resolve) => setImmediate(resolve));
  expect((await store.get(key('g')))?.v).toBe('g');

  for (const read of hung) await expect(read).rejects.toBeInstanceOf(StoreUnavailableError);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(SERVICE_DEFAULTS.storeRequestTimeoutMs - 50);
  expect(recorder.held()).toBe(1);
  expect((await store.get(key('f')))?.v).toBe('f'); // read again, as after any failed read
}, 30_000);

it('fails only the read of a key DynamoDB refuses; the rest of its batch is read key by key', async () => {
  await put('h');
  const malformed: ItemKey = { pk: 'batch#malformed', sk: '' }; // DynamoDB takes no empty key

  await expect(store.get(malformed)).rejects.toMatchObject({ code: 'internal' });
  const [bad, good] = [store.get(malformed), store.get(key('h'))];
  await expect(bad).rejects.toBeInstanceOf(SluiceError);
  await expect(bad).rejects.toMatchObject({ code: 'internal' });
  expect((await good)?.v).toBe('h');
});

it('gives each caller of one key an item of its own', async () => {
  await put('shared');
  const [a, b] = await Promise.all([store.get(key('shared')), store.get(key('shared'))]);
  expect(a).toEqual(b);
  expect(a).not.toBe(b);
});
