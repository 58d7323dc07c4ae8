/**
 * Sharded limits over HTTP, as a user configures them: a provider-wide limit stored with
 * `shards`, two servers (two processes) admitting concurrent callers of many keys under it,
 * settling each other's leases; and the admin API refusing shard counts it cannot keep.
 */
import { DynamoDBStore, itemKeys } from '@sluice/core';
import { itemAttributes, shardKey } from '@sluice/core/internal';
import { localClient } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acquire, acquireAsClient, limitOf, put } from '../support/admin.js';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

let a: Api;
let b: Api;
const table = tableName('shards');
beforeAll(async () => {
  [a, b] = await Promise.all([startApi(table), startApi(table)]);
});

/**
 * Waits until the scope `base` has split into `count` shards, none frozen mid-split: growth runs
 * after the calls that asked for it, and a split halves what a shard holds (a request given back
 * to one shard becomes half a request on each of its halves).
 */
async function grown(base: { pk: string; sk: string }, count: number): Promise<void> {
  const store = new DynamoDBStore({
    client: localClient(inject('dynamoEndpoint')),
    tableName: table,
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const keys = Array.from({ length: count }, (_, i) => (i === 0 ? base : shardKey(base, i)));
    const items = await Promise.all(keys.map((key) => store.get(key)));
    if (items.every((item) => item && item[itemAttributes.frozenAt] === undefined)) return;
    if (Date.now() > deadline) throw new Error(`the scope did not grow to ${count} shards`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

describe('a stored limit with shards', () => {
  it('admits no more than the limit across servers and reports the whole limit', async () => {
    // An hour's window: nothing refills during the test, so the burst is the whole truth.
    await put(a.url, 'resources/sharded-model', {
      limits: [{ name: 'provider_rph', metric: 'requests', limit: 120, per: 'hour', shards: 4 }],
    });
    const servers = [a, b];
    const startedAt = Date.now(); // no lease below was acquired before
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        acquireAsClient((servers[i % 2] as Api).url, {
          entity: `key-${i % 50}`,
          resource: 'sharded-model',
          usage: {},
        }),
      ),
    );
    const admitted = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status === 429);
    expect(admitted.length + refused.length).toBe(200);
    expect(admitted.length).toBeLessThanOrEqual(120);
    // Answers and refusals name the whole limit, not a shard's share of it.
    for (const r of admitted) {
      expect(limitOf(r.body as Record<string, unknown>, 'resource', 'provider_rph')?.limit).toBe(
        120,
      );
    }
    for (const r of refused) {
      expect((r.body as { violations: unknown[] }).violations).toEqual([
        expect.objectContaining({ name: 'provider_rph', limit: 120 }),
      ]);
    }
    // Once the burst is gone, the remaining ones are found on other shards: all of it is used.
    let more = 0;
    for (let i = 0; i < 120 && admitted.length + more < 120; i++) {
      const r = await acquire(a.url, { entity: 'late', resource: 'sharded-model', usage: {} });
      if (r.status === 200) more++;
    }
    expect(admitted.length + more).toBe(120);
    const refusal = await acquire(b.url, { entity: 'last', resource: 'sharded-model', usage: {} });
    expect(refusal.status).toBe(429);
    expect(Number(refusal.headers.get('retry-after'))).toBeGreaterThan(0);

    // A lease released unused on the other server gives its request back, less what its share
    // has refilled since the acquire (a refund never returns what has refilled): the wait for
    // one more request drops from a shard's refill (a request per 2 min) to what refills that
    // back. The lease may have been charged before the scope grew to its 4 shards, at a share
    // refilling up to 4 times faster than a shard's now: the wait is at most 4 times the time
    // since that acquire (seconds, or more on a slow machine). Measured once the growth is done:
    // a split after the release would halve the request given back on each of its halves.
    const ask = { entity: 'anyone', resource: 'sharded-model', usage: { requests: 1 } };
    await grown(itemKeys.resourceBucket('sharded-model'), 4);
    const before = await post(`${a.url}/v1/available`, ask);
    expect(limitOf(before.body, 'resource', 'provider_rph')).toMatchObject({ remaining: 0 });
    expect(before.body.retry_after_ms).toBeGreaterThan(30_000);
    const lease = (admitted[0]?.body as { lease_id?: string } | undefined)?.lease_id;
    const released = await post(`${b.url}/v1/release`, { lease_id: lease });
    expect(released.status).toBe(200);
    const after = await post(`${a.url}/v1/available`, ask);
    expect(limitOf(after.body, 'resource', 'provider_rph')?.limit).toBe(120);
    expect(after.body.retry_after_ms).toBeLessThan(before.body.retry_after_ms as number);
    expect(after.body.retry_after_ms).toBeLessThanOrEqual(4 * (Date.now() - startedAt) + 1_000);
  });

  it('refuses shard counts it cannot keep with a 400 naming the field, and stores nothing', async () => {
    const bad = [
      [{ name: 'x', metric: 'requests', limit: 10, per: 'second', shards: 3 }, 'limits[0].shards'],
      [
        { name: 'x', metric: 'requests', limit: 10, per: 'second', shards: 128 },
        'limits[0].shards',
      ],
      [
        { name: 'x', metric: 'requests', limit: 10, per: 'second', shards: 4, max_shards: 2 },
        'limits[0].max_shards',
      ],
    ] as const;
    for (const [limit, field] of bad) {
      const res = await request('PUT', `${a.url}/v1/admin/resources/bad-shards`, {
        limits: [limit],
      });
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.stringify(res.body)).toContain(field);
    }
    const stored = await request('GET', `${a.url}/v1/admin/resources/bad-shards`);
    expect(stored.status).toBe(404);
  });
});
