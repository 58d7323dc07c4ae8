import { SluiceClient } from '@sluice/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, startApi, tableName } from '../support/api.js';

let a: Api;
let b: Api;
beforeAll(async () => {
  // Both start at once on a database without the table: both try to create it and the key.
  const table = tableName('two');
  [a, b] = await Promise.all([startApi(table), startApi(table)]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

describe('two local servers on one DynamoDB', () => {
  it('settle each other’s leases', async () => {
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 2_592_000 }];
    const acquired = await post(`${a.url}/v1/acquire`, {
      entity: 'shared',
      resource: 'm',
      usage: { tokens: 1_000 },
      limits,
    });

    const released = await post(`${b.url}/v1/release`, {
      lease_id: acquired.body.lease_id,
      usage: { tokens: 400 },
    });

    expect(released).toMatchObject({ status: 200, body: { settled: true } });
    const status = await post(`${a.url}/v1/available`, { entity: 'shared', resource: 'm', limits });
    expect((status.body.limits as { remaining: number }[])[0]?.remaining).toBe(9_600);
  });

  it('never over-admit concurrent callers split across both', async () => {
    const limits = [{ name: 'rpm', metric: 'requests', limit: 40, per: 'hour' as const }];
    const clients = [new SluiceClient({ endpoint: a.url }), new SluiceClient({ endpoint: b.url })];

    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (clients[i % 2] as SluiceClient).acquire({
          entity: 'split',
          resource: 'm',
          usage: {},
          limits,
        }),
      ),
    );

    expect(results.filter((r) => r.allowed)).toHaveLength(40);
  });
});
