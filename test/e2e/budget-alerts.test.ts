/**
 * Budget alerts over HTTP when an admin changes the budget mid-window, as `npm start` serves
 * them: two servers on one table (each reads the table's stream, as two readers would), a
 * webhook that records what it is sent, and admin PUTs between the calls. Then a new server reads
 * the whole stream again: nothing more is sent.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

interface Received {
  readonly detail: { entity: string; threshold: number; limit_value: number; used: number };
}

let servers: Api[] = [];
let table: string;
let env: Record<string, string>;
let hook: Server;
const received: Received[] = [];

beforeAll(async () => {
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      received.push(JSON.parse(body));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  const address = hook.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  table = tableName('budget-alerts-e2e');
  // Both servers read the budget an admin just stored (no cached configuration).
  env = { SLUICE_ALERT_WEBHOOK: `http://127.0.0.1:${port}/alerts`, SLUICE_CONFIG_CACHE_MS: '0' };
  servers = await Promise.all([startApi(table, env), startApi(table, env)]);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await new Promise((resolve) => hook.close(resolve));
});

const url = (i: number) => (servers[i % servers.length] as Api).url;

/** A zone whose month does not turn while the test runs (it takes seconds; this leaves hours). */
function steadyZone(nowMs = Date.now()): string {
  const now = new Date(nowMs);
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const end = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  const margin = 2 * 3_600_000;
  return nowMs - start < margin || end - nowMs < margin ? 'Pacific/Kiritimati' : 'UTC';
}

/** What the webhook received for `entity`, as [threshold, limit_value], in order of budget. */
const sentFor = (entity: string) =>
  received
    .filter((r) => r.detail.entity === entity)
    .map((r) => [r.detail.threshold, r.detail.limit_value])
    .sort((a, b) => (a[1] ?? 0) - (b[1] ?? 0) || (a[0] ?? 0) - (b[0] ?? 0));

describe('budget alerts when an admin changes the budget mid-window', () => {
  it('fire at a lowered budget on the next call, again at a raised one, each once', async () => {
    const entity = 'budget-team';
    const zone = steadyZone();
    const budget = (limit: number) => ({
      limits: [
        {
          name: 'monthly_tokens',
          metric: 'tokens',
          limit,
          window: 'month',
          timezone: zone,
          alerts: [0.8, 1],
        },
      ],
    });
    const put = (limit: number) =>
      request('PUT', `${url(0)}/v1/admin/entities/${entity}`, budget(limit));
    const call = (i: number, tokens: number) =>
      post(`${url(i)}/v1/acquire`, { entity, resource: 'gpt-4o', usage: { tokens } });

    expect((await put(10_000)).status).toBe(201);
    expect((await call(0, 6_000)).status).toBe(200); // 60%: nothing
    expect((await put(7_000)).status).toBe(200);
    expect((await call(1, 500)).status).toBe(200); // 6,500 of 7,000: past 80% (5,600)
    await expect.poll(() => sentFor(entity), { timeout: 30_000 }).toEqual([[0.8, 7_000]]);
    expect((await call(0, 500)).status).toBe(200); // all of 7,000
    await expect
      .poll(() => sentFor(entity), { timeout: 30_000 })
      .toEqual([
        [0.8, 7_000],
        [1, 7_000],
      ]);

    // Raised to 20,000: concurrent callers on both servers reach 80% and 100% of it.
    expect((await put(20_000)).status).toBe(200);
    const calls = await Promise.all(Array.from({ length: 13 }, (_, i) => call(i, 1_000)));
    expect(calls.map((c) => c.status)).toEqual(Array(13).fill(200));
    const all = [
      [0.8, 7_000],
      [1, 7_000],
      [0.8, 20_000],
      [1, 20_000],
    ];
    await expect.poll(() => sentFor(entity), { timeout: 30_000 }).toEqual(all);

    type Listed = { entity: string; threshold: number; limit_value: number; delivered: boolean };
    const listed = async () =>
      ((await request('GET', `${url(1)}/v1/admin/alerts`)).body.items as Listed[])
        .filter((a) => a.entity === entity)
        .map((a) => [a.threshold, a.limit_value, a.delivered])
        .sort((a, b) => Number(a[1]) - Number(b[1]) || Number(a[0]) - Number(b[0]));
    await expect
      .poll(listed, { timeout: 10_000 })
      .toEqual(all.map(([threshold, limit]) => [threshold, limit, true]));

    // A new reader of the whole stream: once it has sent a marker written after everything
    // else, it has read every change above again, and sent none of them twice.
    await Promise.all(servers.map((server) => server.stop()));
    servers = [await startApi(table, env)];
    const marker = {
      limits: [{ name: 'm', metric: 'tokens', limit: 1, window: 'month', alerts: [1] }],
    };
    expect((await request('PUT', `${url(0)}/v1/admin/entities/replay-marker`, marker)).status).toBe(
      201,
    );
    const ask = { entity: 'replay-marker', resource: 'gpt-4o', usage: { tokens: 1 } };
    expect((await post(`${url(0)}/v1/acquire`, ask)).status).toBe(200);
    await expect.poll(() => sentFor('replay-marker'), { timeout: 30_000 }).toEqual([[1, 1]]);
    expect(sentFor(entity)).toEqual(all);
  });
});
