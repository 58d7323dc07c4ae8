/**
 * The edges over HTTP, on the local server as `npm start` runs it (late refunds need a clock the
 * test moves: they are in test/integration/edges.test.ts): stale
 * adjusts, a reset mid-lease, priority with waiting, odd metric names, configuration that does
 * not fit together, and key rotation with the CLI.
 */
import { main } from '@sluice/cli';
import { DynamoDBStore, itemKeys } from '@sluice/core';
import { localClient } from '@sluice/local';
import { describe, expect, inject, it } from 'vitest';
import { fileApi, post, request } from '../support/api.js';

const api = fileApi('edges');
let n = 0;

const entity = () => `edge-${++n}`;
const acquire = (body: Record<string, unknown>) => post(`${api.url}/v1/acquire`, body);
const remaining = async (body: Record<string, unknown>, name: string) => {
  const seen = await post(`${api.url}/v1/available`, body);
  const limits = seen.body.limits as { name: string; remaining: number }[];
  return limits.find((l) => l.name === name)?.remaining;
};

describe('over HTTP', () => {
  it('a late copy of an older adjust changes nothing', async () => {
    const e = entity();
    const limits = [{ name: 'tpd', metric: 'tokens', limit: 10_000, per: 'day' }];
    const lease = (await acquire({ entity: e, resource: 'm', usage: { tokens: 1_000 }, limits }))
      .body.lease_id;

    const adjust = (tokens: number) =>
      post(`${api.url}/v1/adjust`, { lease_id: lease, usage: { tokens } });
    await adjust(300);
    await adjust(500);
    const late = await adjust(300);

    expect(late.status).toBe(200);
    expect(late.body.usage).toMatchObject({ tokens: 500 });
    expect(await remaining({ entity: e, resource: 'm', limits }, 'tpd')).toBe(9_500);
  });

  it('a lease taken before a reset refunds nothing into the quota after it', async () => {
    const e = entity();
    const limits = [{ name: 'daily', metric: 'tokens', limit: 1_000, window: 'day' }];
    const a = await acquire({ entity: e, resource: 'm', usage: { tokens: 800 }, limits });
    await request('POST', `${api.url}/v1/admin/entities/${e}/reset`);
    const b = await acquire({ entity: e, resource: 'm', usage: { tokens: 600 }, limits });

    await post(`${api.url}/v1/release`, { lease_id: a.body.lease_id });
    const c = await acquire({ entity: e, resource: 'm', usage: { tokens: 500 }, limits });

    expect([a.status, b.status, c.status]).toEqual([200, 200, 429]);
    expect(await remaining({ entity: e, resource: 'm', limits }, 'daily')).toBe(400);
  });

  it('a lower priority that may wait still leaves the headroom kept for higher ones', async () => {
    const e = entity();
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 100, per: 'minute' }];
    await acquire({ entity: e, resource: 'm', usage: { tokens: 40 }, limits });

    const low = await acquire({
      entity: e,
      resource: 'm',
      usage: { tokens: 40 },
      limits,
      priority: 50,
      max_wait_ms: 60_000,
    });
    const high = await acquire({ entity: e, resource: 'm', usage: { tokens: 60 }, limits });

    expect(low.status).toBe(429);
    expect(high.status).toBe(200);
    expect(high.body.wait_ms).toBe(0);
  });

  it('a metric named constructor is a metric, not a 500', async () => {
    const limits = [{ name: 'odd', metric: 'constructor', limit: 10, per: 'minute' }];

    const answer = await acquire({ entity: entity(), resource: 'm', usage: { tokens: 5 }, limits });

    expect(answer.status).toBe(200);
  });

  it('configuration that does not fit together is refused with configuration_invalid, not a 5xx', async () => {
    const store = new DynamoDBStore({
      client: localClient(inject('dynamoEndpoint')),
      tableName: api.tableName,
    });
    const e = entity();
    // As older data or a hand edit could leave it: an entity naming a plan that is not stored.
    await store.update({
      key: itemKeys.config('entity', e),
      set: [
        { attr: 'doc', value: JSON.stringify({ plan: 'never-stored' }) },
        { attr: 'at', value: new Date().toISOString() },
        { attr: 'by', value: 'hand' },
        { attr: 'v', value: 1n },
      ],
    });

    const answer = await acquire({ entity: e, resource: 'm', usage: { tokens: 1 } });
    const read = await post(`${api.url}/v1/available`, { entity: e, resource: 'm' });

    expect(answer.status).toBe(409);
    expect(answer.body).toMatchObject({ code: 'configuration_invalid' });
    expect(read.status).toBe(409);
  });

  it('npx sluice rotate-key: new leases use the new key, older ones still settle', async () => {
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }];
    const ask = { entity: entity(), resource: 'm', usage: { tokens: 100 }, limits };
    const before = await acquire(ask);
    const out: string[] = [];

    const code = await main(
      ['rotate-key', '--endpoint', api.url],
      (l) => out.push(l),
      () => {},
    );
    const after = await acquire(ask);
    const keyOf = (token: unknown) =>
      JSON.parse(Buffer.from(String(token).split('.')[0] ?? '', 'base64url').toString()).k;

    expect(code).toBe(0);
    expect(out.join('\n')).toMatch(/signs from now on/);
    expect(keyOf(after.body.lease_id)).not.toBe(keyOf(before.body.lease_id));
    for (const lease of [before.body.lease_id, after.body.lease_id]) {
      const settled = await post(`${api.url}/v1/release`, {
        lease_id: lease,
        usage: { tokens: 50 },
      });
      expect(settled.status).toBe(200);
    }
    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1`);
    expect((audit.body.items as unknown[])[0]).toMatchObject({
      action: 'rotate',
      kind: 'signing_key',
    });
    // Key ids only: no secret the key item holds appears in the audit.
    const store = new DynamoDBStore({
      client: localClient(inject('dynamoEndpoint')),
      tableName: api.tableName,
    });
    const keyItem = (await store.get(itemKeys.leaseSigningKey())) ?? {};
    const secrets = Object.entries(keyItem).filter(([attr]) => attr.startsWith('k_'));
    expect(secrets.length).toBeGreaterThanOrEqual(2);
    for (const [, secret] of secrets) expect(JSON.stringify(audit.body)).not.toContain(secret);
    expect(JSON.stringify(audit.body)).not.toMatch(/secret/);
  });
});
