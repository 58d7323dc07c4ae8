/**
 * Usage history, budget alerts and shadow limits over HTTP, as `npm start` serves them: two
 * servers on one table (each runs its own stream aggregator, as two readers would), a webhook
 * that records what it is sent.
 */
import { randomInt } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, post, request, startApi, tableName } from '../support/api.js';

let servers: Api[] = [];
let table: string;
let env: Record<string, string>;
let hook: Server;
const received: { detail: { entity: string; threshold: number; limit: string } }[] = [];

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
  table = tableName('usage-e2e');
  env = {
    SLUICE_ALERT_WEBHOOK: `http://127.0.0.1:${port}/alerts`,
    SLUICE_DENIAL_FLUSH_MS: '200',
  };
  servers = await Promise.all([startApi(table, env), startApi(table, env)]);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await new Promise((resolve) => hook.close(resolve));
});

const url = (i: number) => (servers[i % servers.length] as Api).url;
const put = (path: string, body: unknown) => request('PUT', `${url(0)}/v1/admin${path}`, body);

async function usageOf(entity: string, query = 'granularity=month') {
  const answer = await request('GET', `${url(1)}/v1/usage?entity=${entity}&${query}`);
  expect(answer.status).toBe(200);
  const total: Record<string, number> = {};
  let leases = 0;
  const denied: Record<string, number> = {};
  for (const item of answer.body.items as {
    usage: Record<string, number>;
    leases: number;
    denied: Record<string, number>;
  }[]) {
    for (const [k, v] of Object.entries(item.usage)) total[k] = (total[k] ?? 0) + v;
    for (const [k, v] of Object.entries(item.denied)) denied[k] = (denied[k] ?? 0) + v;
    leases += item.leases;
  }
  return { usage: total, leases, denied };
}

describe('usage history over HTTP', () => {
  it('equals the sum of what was settled, to the unit, after concurrent calls on two servers, and after a replay of the whole stream', async () => {
    expect((await put('/entities/org-e2e', { timezone: 'America/New_York' })).status).toBe(201);
    for (const key of ['k1', 'k2', 'k3'])
      expect(
        (await put(`/entities/${key}`, { parent: 'org-e2e', timezone: 'America/New_York' })).status,
      ).toBe(201); // one day for all: top entities of the org's day hold the keys whatever the hour
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 60_000, per: 'minute' }];
    const want = new Map<string, { usage: Record<string, number>; leases: number }>();
    const count = (entity: string, usage: Record<string, number>) => {
      const entry = want.get(entity) ?? { usage: {}, leases: 0 };
      for (const [k, v] of Object.entries(usage)) entry.usage[k] = (entry.usage[k] ?? 0) + v;
      entry.leases++;
      want.set(entity, entry);
    };

    await Promise.all(
      Array.from({ length: 48 }, async (_, i) => {
        const entity = `k${(i % 3) + 1}`;
        const input = 100 + randomInt(900);
        const output = 50 + randomInt(450);
        const ask = {
          entity,
          resource: 'gpt-4o',
          usage: { input_tokens: input, output_tokens: output },
          limits,
        };
        const acquired = await post(`${url(i)}/v1/acquire`, ask);
        if (acquired.status !== 200) return; // refused: counts nothing
        const lease = acquired.body.lease_id;
        switch (i % 4) {
          case 0: {
            // streamed: adjusts, then the final totals (on the other server)
            await post(`${url(i)}/v1/adjust`, { lease_id: lease, usage: { output_tokens: 10 } });
            await post(`${url(i + 1)}/v1/adjust`, {
              lease_id: lease,
              usage: { output_tokens: 20 },
            });
            const final = { input_tokens: input, output_tokens: output + 33 };
            expect(
              (await post(`${url(i + 1)}/v1/release`, { lease_id: lease, usage: final })).status,
            ).toBe(200);
            count(entity, { ...final, tokens: input + output + 33, requests: 1 });
            return;
          }
          case 1:
            // the call failed: given back, counts nothing
            expect((await post(`${url(i + 1)}/v1/release`, { lease_id: lease })).status).toBe(200);
            return;
          case 2: {
            const final = { input_tokens: 7, output_tokens: 3 };
            await post(`${url(i)}/v1/release`, { lease_id: lease, usage: final });
            await post(`${url(i + 1)}/v1/release`, { lease_id: lease, usage: final }); // a retry
            count(entity, { ...final, tokens: 10, requests: 1 });
            return;
          }
          default:
            // never settled: its estimate stands
            count(entity, {
              input_tokens: input,
              output_tokens: output,
              tokens: input + output,
              requests: 1,
            });
        }
      }),
    );

    const org = { usage: {} as Record<string, number>, leases: 0 };
    for (const entity of ['k1', 'k2', 'k3']) {
      const expected = want.get(entity) ?? { usage: {}, leases: 0 };
      for (const [k, v] of Object.entries(expected.usage)) org.usage[k] = (org.usage[k] ?? 0) + v;
      org.leases += expected.leases;
      await expect
        .poll(
          async () => {
            const got = await usageOf(entity);
            return { usage: got.usage, leases: got.leases };
          },
          { timeout: 30_000, interval: 250 },
        )
        .toEqual(expected);
    }
    await expect
      .poll(
        async () => {
          const got = await usageOf('org-e2e', 'granularity=day&resource=gpt-4o');
          return { usage: got.usage, leases: got.leases };
        },
        { timeout: 30_000, interval: 250 },
      )
      .toEqual(org);

    // Top entities are kept by each entity's own day: New York's, for the org and its keys.
    const orgDay = new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York' }).format(
      new Date(),
    );
    const top = await request(
      'GET',
      `${url(0)}/v1/admin/usage/top?metric=tokens&limit=2&date=${orgDay}`,
    );
    expect(top.status).toBe(200);
    expect((top.body.items as { entity: string }[]).map((e) => e.entity)).toContain('org-e2e');
    expect(top.body.items).toHaveLength(2);
    expect([top.body.exact, top.body.error_bound]).toEqual([true, 0]); // a board holds them all

    // The deployment-wide roll-up counts each lease once: every call so far was under org-e2e.
    const overview = await request(
      'GET',
      `${url(1)}/v1/admin/usage/overview?granularity=day&resource=gpt-4o`,
    );
    expect(overview.status).toBe(200);
    expect(overview.body.entity).toBe('*');
    const rolled = { usage: {} as Record<string, number>, leases: 0 };
    for (const item of overview.body.items as { usage: Record<string, number>; leases: number }[]) {
      for (const [k, v] of Object.entries(item.usage)) rolled.usage[k] = (rolled.usage[k] ?? 0) + v;
      rolled.leases += item.leases;
    }
    expect(rolled).toEqual(org);

    // A replay of every batch: new processes read the whole stream again from its start.
    await Promise.all(servers.map((server) => server.stop()));
    servers = await Promise.all([startApi(table, env), startApi(table, env)]);
    const marker = { entity: 'replay-marker', resource: 'gpt-4o', usage: { tokens: 1 }, limits };
    expect((await post(`${url(0)}/v1/acquire`, marker)).status).toBe(200);
    await expect
      .poll(async () => (await usageOf('replay-marker')).usage.tokens, { timeout: 30_000 })
      .toBe(1); // the new readers have reached the end of the stream
    for (const entity of ['k1', 'k2', 'k3']) {
      const got = await usageOf(entity);
      expect({ usage: got.usage, leases: got.leases }).toEqual(want.get(entity));
    }
    // A date alone as `to` includes that day.
    const today = new Date().toISOString().slice(0, 10);
    const sameDay = await usageOf('k1', `granularity=hour&from=${today}&to=${today}`);
    expect(sameDay.usage).toEqual(want.get('k1')?.usage);
    const orgAgain = await usageOf('org-e2e', 'granularity=day&resource=gpt-4o');
    expect({ usage: orgAgain.usage, leases: orgAgain.leases }).toEqual(org);
  });

  it('refuses bad queries with a 400 naming the field', async () => {
    const cases: [string, string][] = [
      ['/v1/usage?granularity=day', 'entity'],
      ['/v1/usage?entity=k1&granularity=week', 'granularity'],
      ['/v1/usage?entity=k1&colour=blue', 'colour'],
      ['/v1/usage?entity=k1&from=2099-01-01', 'from'],
      ['/v1/usage?entity=k1&from=yesterday', 'from'],
      ['/v1/usage?entity=k1&from=2026-11-02&to=2026-11-01', 'to'],
      ['/v1/usage?entity=k1&from=2026-11-02T00:00:00Z&to=2026-11-02T00:00:00Z', 'to'],
      ['/v1/usage?entity=k1&granularity=hour&from=2026-01-01&to=2026-11-01', 'to'],
      ['/v1/admin/usage/top?by=cost', 'by'],
      ['/v1/admin/usage/overview?entity=k1', 'entity'],
      ['/v1/admin/usage/overview?granularity=week', 'granularity'],
      ['/v1/admin/usage/top?limit=0', 'limit'],
      ['/v1/admin/usage/top?date=2026-13-40', 'date'],
      ['/v1/admin/alerts?limit=abc', 'limit'],
      // Dates and times: real calendar ones, from 2000-01-01 to 2999-12-31 (UTC), in every form.
      ['/v1/usage?entity=k1&to=9999-12-31', 'to'],
      ['/v1/usage?entity=k1&granularity=hour&to=9999-12-31', 'to'],
      ['/v1/usage?entity=k1&granularity=month&to=9999-12-31', 'to'],
      ['/v1/usage?entity=k1&granularity=hour&to=2999-12-31T23:30:00-01:00', 'to'],
      ['/v1/usage?entity=k1&granularity=hour&to=9999-12-31T23:30:00%2B01:00', 'to'],
      ['/v1/usage?entity=k1&from=1999-12-31&to=2000-01-02', 'from'],
      ['/v1/usage?entity=k1&from=0001-01-01', 'from'],
      ['/v1/usage?entity=k1&from=2026-02-30', 'from'],
      ['/v1/usage?entity=k1&from=2026-02-01&to=2026-02-31', 'to'],
      ['/v1/usage?entity=k1&granularity=month&from=2025-02-29', 'from'],
      ['/v1/usage?entity=k1&granularity=hour&from=2026-11-01T24:00:00Z', 'from'],
      ['/v1/usage?entity=k1&granularity=hour&to=2026-11-01T10:00:00%2B24:00', 'to'],
      ['/v1/usage?entity=k1&from=%2B010000-01-01', 'from'],
      ['/v1/usage?entity=k1&from=2026-11-01&to=2026-10-31', 'to'],
      ['/v1/admin/usage/top?date=2026-02-30', 'date'],
      ['/v1/admin/usage/top?period=month&date=2026-02-30', 'date'],
      ['/v1/admin/usage/top?date=9999-12-31', 'date'],
      ['/v1/admin/usage/top?date=1999-12-31', 'date'],
      ['/v1/admin/usage/top?date=2026-11-01T00:00:00Z', 'date'],
      // Every listing's cursor and limit.
      ['/v1/admin/alerts?cursor=garbage', 'cursor'],
      ['/v1/admin/alerts?cursor=YWJj', 'cursor'], // base64url of "abc": no alert's key
      ['/v1/admin/audit?cursor=garbage', 'cursor'],
      ['/v1/admin/audit?cursor=YWJj', 'cursor'],
      ['/v1/admin/plans?cursor=garbage', 'cursor'],
      ['/v1/admin/entities?cursor=garbage', 'cursor'],
      ['/v1/admin/resources?cursor=garbage', 'cursor'],
      ['/v1/admin/entities?cursor=IQ', 'cursor'], // "!": no entity's name
      ['/v1/admin/plans?limit=1e2', 'limit'],
      ['/v1/admin/audit?limit=0x10', 'limit'],
      ['/v1/admin/usage/top?limit=1e2', 'limit'],
    ];
    const stored: [string, unknown, string][] = [
      ['/entities/tz-bad', { timezone: 'Mars/Olympus' }, 'timezone'],
      ['/settings', { budget_alerts: [0.5, 2] }, 'budget_alerts[1]'],
      [
        '/plans/p-bad',
        { limits: [{ name: 'q', metric: 'tokens', limit: 9, window: 'day', alerts: [0] }] },
        'limits[0].alerts[0]',
      ],
      [
        '/plans/p-bad',
        { limits: [{ name: 'r', metric: 'tokens', limit: 9, per: 'minute', mode: 'off' }] },
        'limits[0].mode',
      ],
    ];
    for (const [path, body, field] of stored) {
      const answer = await put(path, body);
      expect({ path, status: answer.status, field: answer.body.field }).toEqual({
        path,
        status: 400,
        field,
      });
    }
    for (const [path, field] of cases) {
      const answer = await request('GET', `${url(0)}${path}`);
      expect({ path, status: answer.status, field: answer.body.field }).toEqual({
        path,
        status: 400,
        field,
      });
    }
  });
});

describe('budget alerts over HTTP', () => {
  it('fire exactly once when 32 concurrent callers cross 80%', async () => {
    const quota = {
      name: 'monthly_tokens',
      metric: 'tokens',
      limit: 40_000,
      window: 'month',
      alerts: [0.8],
    };
    expect((await put('/entities/team-alerts', { limits: [quota] })).status).toBe(201);
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, i) =>
        post(`${url(i)}/v1/acquire`, {
          entity: 'team-alerts',
          resource: 'gpt-4o',
          usage: { tokens: 1_000 },
        }),
      ),
    );
    expect(results.every((r) => r.status === 200)).toBe(true); // 32,000 of 40,000: past 80%

    await expect
      .poll(() => received.filter((r) => r.detail.entity === 'team-alerts').length, {
        timeout: 30_000,
      })
      .toBe(1);
    type Listed = { entity: string; threshold: number; delivered: boolean; used: number };
    const listed = async () =>
      ((await request('GET', `${url(1)}/v1/admin/alerts`)).body.items as Listed[]).filter(
        (a) => a.entity === 'team-alerts',
      );
    // Marked delivered once the webhook has answered.
    await expect.poll(async () => (await listed())[0]?.delivered, { timeout: 10_000 }).toBe(true);
    const mine = await listed();
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      threshold: 0.8,
      delivered: true,
      limit: 'monthly_tokens',
      limit_value: 40_000,
    });
    expect(mine[0]?.used).toBeGreaterThanOrEqual(32_000);
    // Paged one at a time, the `next` cursors list the same alerts.
    const all = (await request('GET', `${url(1)}/v1/admin/alerts`)).body.items as Listed[];
    const paged: Listed[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = await request('GET', `${url(0)}/v1/admin/alerts?limit=1${query}`);
      expect(page.status).toBe(200);
      paged.push(...(page.body.items as Listed[]));
      cursor = page.body.next as string | null;
    } while (cursor);
    expect(paged).toEqual(all);
    // Two servers read the same stream: still one.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(received.filter((r) => r.detail.entity === 'team-alerts')).toHaveLength(1);
  });
});

describe('shadow limits over HTTP', () => {
  it('never refuse, say what they would have refused, and count it', async () => {
    const limits = [
      { name: 'rpm', metric: 'requests', limit: 1_000, per: 'minute' },
      { name: 'strict_rpm', metric: 'requests', limit: 3, per: 'minute', mode: 'shadow' },
    ];
    expect((await put('/entities/shadowed', { limits })).status).toBe(201);
    const answers = [];
    for (let i = 0; i < 10; i++)
      answers.push(
        await post(`${url(i)}/v1/acquire`, { entity: 'shadowed', resource: 'm', usage: {} }),
      );

    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    const flagged = answers.filter((a) =>
      (a.body.shadow_violations as { name: string }[]).some((v) => v.name === 'strict_rpm'),
    );
    expect(flagged).toHaveLength(7);
    // Shadow limits are not shown as limits, nor in the headers clients act on.
    for (const a of answers) {
      expect((a.body.limits as { name: string }[]).map((l) => l.name)).toEqual(['rpm']);
      expect(a.headers.get('ratelimit-policy') ?? '').not.toContain('strict_rpm');
    }
    await expect
      .poll(async () => (await usageOf('shadowed', 'granularity=hour')).denied, { timeout: 30_000 })
      .toEqual({ 'shadow:strict_rpm': 7 });
    expect((await usageOf('shadowed', 'granularity=hour')).leases).toBe(10);
  });
});

describe('an alert webhook that keeps failing', () => {
  it('never delays a decision, and leaves the alert listed as undelivered', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const address = closed.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const api = await startApi(tableName('usage-hook'), {
      SLUICE_ALERT_WEBHOOK: `http://127.0.0.1:${port}/gone`,
    });
    try {
      const quota = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day', alerts: [0.5] };
      const ask = { entity: 'hooked', resource: 'm', usage: { tokens: 600 }, limits: [quota] };
      const answer = await post(`${api.url}/v1/acquire`, ask);
      expect(answer.status).toBe(200);
      type Listed = { entity: string; delivered: boolean };
      await expect
        .poll(
          async () =>
            ((await request('GET', `${api.url}/v1/admin/alerts`)).body.items as Listed[]).filter(
              (a) => a.entity === 'hooked',
            ),
          { timeout: 30_000 },
        )
        .toEqual([expect.objectContaining({ entity: 'hooked', delivered: false, threshold: 0.5 })]);
      // Decisions go on while the webhook fails.
      expect((await post(`${api.url}/v1/acquire`, { ...ask, usage: { tokens: 100 } })).status).toBe(
        200,
      );
    } finally {
      await api.stop();
    }
  });
});
