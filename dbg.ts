import type { ItemUpdate } from '@sluice/core';
import { DynamoDBStore, ensureTable, itemKeys, Limiter, parseLimits } from '@sluice/core';
import { localClient, startDynamoDBLocal } from '@sluice/local';

const db = await startDynamoDBLocal();
const client = localClient(db.endpoint);
await ensureTable(client, 'dbg');
const inner = new DynamoDBStore({ client, tableName: 'dbg' });
let i = 0;
const store = Object.create(inner);
store.update = async (u: ItemUpdate) => {
  const r = await inner.update(u);
  if (i >= 11 && i <= 13)
    console.log(
      i,
      JSON.stringify(u, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
      r.ok,
      JSON.stringify(r.item, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
    );
  return r;
};
store.transact = inner.transact.bind(inner);
store.get = inner.get.bind(inner);
store.putIfAbsent = inner.putIfAbsent.bind(inner);
const now = Date.parse('2026-01-15T12:00:00Z');
const limiter = new Limiter({ store, clock: () => now });
const c = {
  scope: 'entity',
  key: itemKeys.entityBucket('k', 'm'),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute' }]),
};
for (i = 0; i < 14; i++) await limiter.acquire({ checks: [c], usage: { tokens: 1 } });
await db.stop();
