/**
 * Budget alerts over HTTP when calls are refused and when an admin changes the budget
 * mid-window, as `npm start` serves them: two servers on one table (each reads the table's
 * stream, as two readers would), a webhook that records what it is sent, and admin PUTs between
 * the calls. A charge given back never fires an alert; a budget cut below what was used fires,
 * even when the calls are too large for it. Then a new server reads the whole stream again:
 * nothing more is sent.
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

type Listed = { entity: string; threshold: number; limit_value: number; delivered: boolean };

/** The alerts the table lists for `entity` (`?entity=`), as [threshold, limit_value, delivered]. */
async function listedFor(entity: string) {
  const path = `/v1/admin/alerts?entity=${encodeURIComponent(entity)}`;
  const listed = (await request('GET', `${url(1)}${path}`)).body.items as Listed[];
  expect(listed.filter((a) => a.entity !== entity)).toEqual([]); // its own alerts only
  return listed
    .map((a) => [a.threshold, a.limit_value, a.delivered])
    .sort((a, b) => Number(a[1]) - Number(b[1]) || Number(a[0]) - Number(b[0]));
}

/** A monthly token budget of `limit` alerting at `alerts`, in a zone whose month stays put. */
const monthly = (limit: number, alerts: number[]) => ({
  limits: [
    { name: 'budget', metric: 'tokens', limit, window: 'month', timezone: steadyZone(), alerts },
  ],
});

describe('budget alerts and refused calls', () => {
  it('never fire for a charge given back when another scope refused the call', async () => {
    const entity = 'refused-team';
    expect(
      (await request('PUT', `${url(0)}/v1/admin/plans/capped`, monthly(100, [1]))).status,
    ).toBe(201);
    const stored = await request('PUT', `${url(0)}/v1/admin/entities/${entity}`, {
      plan: 'capped',
    });
    expect(stored.status).toBe(201);
    // One request a day for the entity and model, beside the entity's budget (all its models).
    const rpd = [{ name: 'rpd', metric: 'requests', limit: 1, per: 'day' }];
    const ask = (who: string, tokens: number) => ({
      entity: who,
      resource: 'gpt-4o',
      usage: { tokens },
      limits: rpd,
    });

    expect((await post(`${url(0)}/v1/acquire`, ask(entity, 95))).status).toBe(200); // 95 of 100
    // The other server has seen neither item: it charges both, and rpd refuses.
    const refused = await post(`${url(1)}/v1/acquire`, ask(entity, 5));

    expect(refused).toMatchObject({ status: 429, body: { violations: [{ name: 'rpd' }] } });
    const budgetOn = async (i: number) =>
      (await post(`${url(i)}/v1/available`, { entity, resource: 'gpt-4o' })).body.limits;
    await expect
      .poll(() => budgetOn(1), { timeout: 10_000 })
      .toMatchObject([{ name: 'budget', remaining: 5 }]);
    expect(await budgetOn(0)).toMatchObject([{ name: 'budget', remaining: 5 }]);
    const usage = async (who: string) =>
      (await request('GET', `${url(0)}/v1/usage?entity=${who}&granularity=hour`)).body.items;
    await expect
      .poll(() => usage(entity), { timeout: 15_000 })
      .toMatchObject([{ usage: { tokens: 95 } }]);
    // Once a lease taken after the give-back is counted, the stream has been read past it.
    expect((await post(`${url(1)}/v1/acquire`, ask('refused-marker', 1))).status).toBe(200);
    await expect
      .poll(() => usage('refused-marker'), { timeout: 15_000 })
      .toMatchObject([{ leases: 1 }]);
    expect(await listedFor(entity)).toEqual([]);
    expect(sentFor(entity)).toEqual([]);
  });

  it('fire at a budget cut below both what was used and the size of the calls (422)', async () => {
    const entity = 'cut-team';
    const plan = (limit: number) =>
      request('PUT', `${url(0)}/v1/admin/plans/cut`, monthly(limit, [0.9, 1]));
    expect((await plan(10_000)).status).toBe(201);
    const stored = await request('PUT', `${url(0)}/v1/admin/entities/${entity}`, { plan: 'cut' });
    expect(stored.status).toBe(201);
    const ask = (tokens: number) => ({ entity, resource: 'gpt-4o', usage: { tokens } });
    expect((await post(`${url(0)}/v1/acquire`, ask(6_000))).status).toBe(200); // 60%: nothing

    expect((await plan(1_000)).status).toBe(200);
    // 2,000 could never fit in 1,000; the server asked has not seen the budget's item yet.
    const refused = await post(`${url(1)}/v1/acquire`, ask(2_000));

    expect(refused).toMatchObject({
      status: 422,
      body: {
        code: 'exceeds_capacity',
        violations: [{ name: 'budget', limit: 1_000, remaining: -5_000 }], // 6,000 used
      },
    });
    const fired = [
      [0.9, 1_000],
      [1, 1_000],
    ];
    await expect.poll(() => sentFor(entity), { timeout: 30_000 }).toEqual(fired);
    await expect
      .poll(() => listedFor(entity), { timeout: 10_000 })
      .toEqual(fired.map(([threshold, limit]) => [threshold, limit, true]));
  });
});

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

    await expect
      .poll(() => listedFor(entity), { timeout: 10_000 })
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
