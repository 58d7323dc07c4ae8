/**
 * One caller's read that DynamoDB refuses for its key (a name too long) fails that caller only,
 * not the reads other callers asked for in the same turn (the batch is read again key by key).
 */
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { ConfigAdmin, DynamoDBAdminStore } from '@sluice/core';
import { expect, it } from 'vitest';
import { fileTable } from '../support/table.js';

const table = fileTable('reads-refusals');

it('a read of a valid key is not failed by another caller asking for an over-long name', async () => {
  const store = new DynamoDBAdminStore({ client: table.client, tableName: table.tableName });
  const admin = new ConfigAdmin({ store });
  const good = { pk: 'good#1', sk: 's' };
  await table.client.send(
    new PutItemCommand({
      TableName: table.tableName,
      Item: { pk: { S: good.pk }, sk: { S: good.sk }, v: { S: 'good' } },
    }),
  );
  // Alone, each behaves as it always did: the good read answers, the bad one fails.
  expect((await store.get(good))?.v).toBe('good');
  await expect(admin.get('entity', 'x'.repeat(1_100))).rejects.toMatchObject({ code: 'internal' });

  // Together in one turn (two unrelated callers of one store, e.g. the local server):
  const [bad, fine] = await Promise.allSettled([
    admin.get('entity', 'x'.repeat(1_100)),
    store.get(good),
  ]);
  expect(bad.status).toBe('rejected');
  expect(fine).toEqual({ status: 'fulfilled', value: expect.objectContaining({ v: 'good' }) });
});

it('two keys that differ only in their lone surrogates read alike alone and batched', async () => {
  const store = new DynamoDBAdminStore({ client: table.client, tableName: table.tableName });
  const a = { pk: 'lone#\uD800', sk: 's' };
  const b = { pk: 'lone#\uDBFF', sk: 's' };
  const alone = [await store.get(a).catch((e) => e.code), await store.get(b).catch((e) => e.code)];
  const batched = await Promise.all([
    store.get(a).catch((e) => e.code),
    store.get(b).catch((e) => e.code),
  ]);
  expect(batched).toEqual(alone);
});
