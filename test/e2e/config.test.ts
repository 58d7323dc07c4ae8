/**
 * Plans, prices and hierarchies over HTTP on the local server: the example file as written,
 * shared project and provider-wide limits under concurrency, exact cost, validation that stores
 * nothing, the audit trail, and the configuration cache.
 */
import { fileURLToPath } from 'node:url';
import { main } from '@sluice/cli';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquire, limitOf, put } from '../support/admin.js';
import { type Api, request, startApi, tableName } from '../support/api.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/sluice.yaml', import.meta.url));
// 30-day periods: refill during a test is far below one unit, so counts can be asserted exactly.
const MONTHLY = 2_592_000;

let api: Api;
beforeAll(async () => {
  api = await startApi(tableName('cfg'));
});
afterAll(async () => {
  await api?.stop();
});

async function cli(
  url: string,
  ...argv: string[]
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    [...argv, '--endpoint', url],
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Milliseconds until the next midnight in New York, computed apart from Sluice's calendar. */
function untilNewYorkMidnight(now = Date.now()): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/New_York',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
    hourCycle: 'h23',
  }).formatToParts(new Date(now));
  const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const elapsed = ((part('hour') * 60 + part('minute')) * 60 + part('second')) * 1000;
  return 86_400_000 - elapsed - (now % 1000);
}

describe('the example file (examples/sluice.yaml)', () => {
  // Its own table: the example's `default` plan would apply to every other test's callers.
  let api: Api;
  beforeAll(async () => {
    api = await startApi(tableName('cfg-example'));
    const applied = await cli(api.url, 'apply', '-f', EXAMPLE);
    expect(applied.code, applied.err).toBe(0);
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('allows each plan its models only', async () => {
    const free = { entity: 'hobbyist-key', usage: { input_tokens: 100, output_tokens: 10 } };
    const denied = await acquire(api.url, { ...free, resource: 'gpt-4o' });
    const haiku = await acquire(api.url, { ...free, resource: 'claude-haiku-4-5' });
    const pro = await acquire(api.url, {
      entity: 'acme-search-key-1',
      resource: 'gpt-4o',
      usage: { input_tokens: 100 },
    });

    expect(denied).toMatchObject({ status: 403, body: { code: 'resource_not_allowed' } });
    expect(haiku.status).toBe(200);
    expect(pro.status).toBe(200);
  });

  it('refuses an input estimate above the plan’s max_input_tokens', async () => {
    const at = (input_tokens: number) =>
      acquire(api.url, {
        entity: 'hobbyist-key',
        resource: 'gpt-4o-mini',
        usage: { input_tokens },
      });
    expect((await at(8_000)).status).toBe(200);
    expect(await at(8_001)).toMatchObject({ status: 422, body: { code: 'context_too_large' } });
  });

  it('enforces the free plan’s tokens per minute, naming scope and limit', async () => {
    await request('POST', `${api.url}/v1/admin/entities/hobbyist-key/reset`);
    const take = (tokens: number) =>
      acquire(api.url, { entity: 'hobbyist-key', resource: 'gpt-4o-mini', usage: { tokens } });
    const first = await take(15_000);
    const second = await take(6_000);

    expect(first.status).toBe(200);
    expect(limitOf(first.body, 'entity', 'tpm')?.remaining).toBeLessThanOrEqual(5_000);
    expect(second.status).toBe(429);
    expect(second.body.violations).toEqual([
      expect.objectContaining({ scope: 'entity', name: 'tpm', limit: 20_000, requested: 6_000 }),
    ]);
  });

  it('shares plan-wide limits across models and counts per-model limits apart', async () => {
    const key = 'acme-search-key-2';
    const on = (resource: string, tokens: number) =>
      acquire(api.url, { entity: key, resource, usage: { tokens } });
    const mini = await on('gpt-4o-mini', 100_000);
    const big = await on('gpt-4o', 10);

    expect(limitOf(mini.body, 'entity', 'model_tpm')).toBeUndefined();
    expect(limitOf(big.body, 'entity', 'model_tpm')).toMatchObject({ limit: 100_000 });
    expect(limitOf(big.body, 'entity', 'model_tpm')?.remaining).toBeGreaterThanOrEqual(99_990);
    // The shared tpm (burst 300,000) already holds the 100,000 tokens sent to gpt-4o-mini.
    expect(limitOf(big.body, 'entity', 'tpm')?.remaining).toBeLessThan(250_000);
  });

  it('keeps a daily USD budget in New York time, priced from the resource', async () => {
    await request('POST', `${api.url}/v1/admin/entities/hobbyist-key/reset`);
    // gpt-4o-mini: $0.15 in, $0.60 out per million: 1,000 + 1,000 tokens cost 750 micro-USD.
    const first = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1_000, output_tokens: 1_000 },
    });
    const budget = limitOf(first.body, 'entity', 'daily_usd');
    expect(budget?.remaining).toBe(500_000 - 750);
    expect(Math.abs((budget?.reset_ms ?? 0) - untilNewYorkMidnight())).toBeLessThan(5_000);

    // The call really wrote 100,000 tokens on Haiku ($5 per million out): $0.50, the whole day.
    const lease = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'claude-haiku-4-5',
      usage: { input_tokens: 10, output_tokens: 10 },
    });
    const settled = await request('POST', `${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage: { input_tokens: 10, output_tokens: 100_000 },
    });
    expect(settled.body.usage).toMatchObject({ cost_micro_usd: 500_010 });

    const refused = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const violation = (refused.body.violations as { name: string; retry_after_ms: number }[]).find(
      (v) => v.name === 'daily_usd',
    );
    expect(refused.status).toBe(429);
    expect(Math.abs((violation?.retry_after_ms ?? 0) - untilNewYorkMidnight())).toBeLessThan(5_000);
  });

  it('refuses a disabled key, and gives unregistered callers the default plan', async () => {
    const disabled = await acquire(api.url, {
      entity: 'leaked-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const stranger = await acquire(api.url, {
      entity: 'nobody-we-know',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const strangerBig = await acquire(api.url, {
      entity: 'nobody-we-know',
      resource: 'gpt-4o',
      usage: { input_tokens: 1 },
    });

    expect(disabled).toMatchObject({ status: 403, body: { code: 'entity_disabled' } });
    expect(limitOf(stranger.body, 'entity', 'rpm')?.limit).toBe(5);
    expect(strangerBig).toMatchObject({ status: 403, body: { code: 'resource_not_allowed' } });
  });

  it('is unchanged when planned again, and a bad file stores nothing', async () => {
    const again = await cli(api.url, 'plan', '-f', EXAMPLE);
    expect(again.out).toContain('0 to create, 0 to change, 0 to delete');

    const bad = fileURLToPath(new URL('./fixtures/bad-burst.yaml', import.meta.url));
    const refused = await cli(api.url, 'apply', '-f', bad);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('plans.tiny.limits[0].burst');
    expect((await request('GET', `${api.url}/v1/admin/plans/tiny`)).status).toBe(404);
  });
});

describe('hierarchies and shared limits', () => {
  it('two keys of one project share its limit under 32 concurrent callers', async () => {
    await put(api.url, 'entities/proj-shared', {
      limits: [
        { name: 'project_rpm', metric: 'requests', limit: 40, per: MONTHLY },
        { name: 'project_tokens', metric: 'tokens', limit: 3_000, per: MONTHLY },
      ],
    });
    for (const key of ['shared-a', 'shared-b']) {
      await put(api.url, `entities/${key}`, {
        parent: 'proj-shared',
        limits: [{ name: 'key_rpm', metric: 'requests', limit: 30, per: MONTHLY }],
      });
    }
    const admitted = { 'shared-a': 0, 'shared-b': 0 };
    let tokensKept = 0;
    await Promise.all(
      Array.from({ length: 32 }, async (_, caller) => {
        const key = caller % 2 ? 'shared-a' : 'shared-b';
        for (let i = 0; i < 4; i++) {
          const tokens = 20 + ((caller * 7 + i * 13) % 80);
          const res = await acquire(api.url, { entity: key, resource: 'm1', usage: { tokens } });
          if (res.status !== 200) continue;
          admitted[key]++;
          // Half the calls used more than estimated, some failed (refund), the rest less.
          const actual = i % 3 === 0 ? undefined : i % 3 === 1 ? tokens + 5 : tokens - 10;
          await request('POST', `${api.url}/v1/release`, {
            lease_id: res.body.lease_id,
            ...(actual === undefined ? {} : { usage: { tokens: actual } }),
          });
          if (actual === undefined) admitted[key]--; // refunded: not a request any more
          tokensKept += actual ?? 0;
        }
      }),
    );
    const total = admitted['shared-a'] + admitted['shared-b'];
    const seen = await request('POST', `${api.url}/v1/available`, {
      entity: 'shared-a',
      resource: 'm1',
    });

    // A refund returns what the lease took less what refilled since its acquire: here a few
    // milliseconds of a monthly rate, a sliver of one unit that `remaining` rounds down.
    const within = (name: string, scope: string, exact: number) => {
      const remaining = limitOf(seen.body, scope, name)?.remaining ?? Number.NaN;
      expect(remaining).toBeLessThanOrEqual(exact);
      expect(remaining).toBeGreaterThanOrEqual(exact - 1);
    };
    expect(total).toBeGreaterThan(0);
    within('project_rpm', 'parent:proj-shared', 40 - total);
    within('project_tokens', 'parent:proj-shared', 3_000 - tokensKept);
    within('key_rpm', 'entity', 30 - admitted['shared-a']);
  });

  it('never admits more than the project holds', async () => {
    await put(api.url, 'entities/proj-cap', {
      limits: [{ name: 'project_rpm', metric: 'requests', limit: 25, per: MONTHLY }],
    });
    for (const key of ['cap-a', 'cap-b']) {
      await put(api.url, `entities/${key}`, { parent: 'proj-cap' });
    }
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, caller) =>
        Promise.all(
          [0, 1].map(() =>
            acquire(api.url, {
              entity: caller % 2 ? 'cap-a' : 'cap-b',
              resource: 'm1',
              usage: {},
            }),
          ),
        ),
      ),
    );
    const statuses = results.flat().map((r) => r.status);
    const denied = results.flat().find((r) => r.status === 429);

    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(25);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(20);
    expect(denied?.body.violations).toEqual([
      expect.objectContaining({ scope: 'parent:proj-cap', name: 'project_rpm' }),
    ]);
  });

  it('holds a provider-wide limit across entities', async () => {
    await put(api.url, 'resources/provider-x', {
      limits: [{ name: 'provider_rpm', metric: 'requests', limit: 30, per: MONTHLY }],
    });
    const results = await Promise.all(
      Array.from({ length: 48 }, (_, i) =>
        acquire(api.url, { entity: `tenant-${i % 6}`, resource: 'provider-x', usage: {} }),
      ),
    );
    const ok = results.filter((r) => r.status === 200).length;
    const denied = results.find((r) => r.status === 429);

    expect(ok).toBeLessThanOrEqual(30);
    expect(ok).toBeGreaterThanOrEqual(25);
    expect(denied?.body.violations).toEqual([
      expect.objectContaining({ scope: 'resource', name: 'provider_rpm' }),
    ]);
  });

  it('keeps bucket state through a limit change and a parent move', async () => {
    await put(api.url, 'entities/move-p1', {
      limits: [{ name: 'p_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
    });
    await put(api.url, 'entities/move-p2', {
      limits: [{ name: 'p_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
    });
    const own = (limit: number) => [{ name: 'rpm', metric: 'requests', limit, per: MONTHLY }];
    await put(api.url, 'entities/mover', { parent: 'move-p1', limits: own(10) });
    for (let i = 0; i < 3; i++)
      await acquire(api.url, { entity: 'mover', resource: 'm', usage: {} });

    await put(api.url, 'entities/mover', { parent: 'move-p2', limits: own(20) });
    const after = await acquire(api.url, { entity: 'mover', resource: 'm', usage: {} });
    const p1 = await request('POST', `${api.url}/v1/available`, {
      entity: 'move-p1',
      resource: 'm',
    });

    expect(limitOf(after.body, 'entity', 'rpm')?.remaining).toBe(20 - 4);
    expect(limitOf(after.body, 'parent:move-p2', 'p_rpm')?.remaining).toBe(9);
    expect(limitOf(p1.body, 'entity', 'p_rpm')?.remaining).toBe(7);
  });

  it('resets an entity’s buckets (a top-up)', async () => {
    await put(api.url, 'entities/topped', {
      limits: [{ name: 'rpm', metric: 'requests', limit: 2, per: MONTHLY }],
    });
    for (let i = 0; i < 2; i++)
      await acquire(api.url, { entity: 'topped', resource: 'm', usage: {} });
    const spent = await acquire(api.url, { entity: 'topped', resource: 'm', usage: {} });
    const reset = await request('POST', `${api.url}/v1/admin/entities/topped/reset`);
    const again = await acquire(api.url, { entity: 'topped', resource: 'm', usage: {} });

    expect(spent.status).toBe(429);
    expect(reset).toMatchObject({ status: 200, body: { entity: 'topped', cleared: 1 } });
    expect(limitOf(again.body, 'entity', 'rpm')?.remaining).toBe(1);
  });

  it('refuses cycles, hierarchies deeper than 8 and deleting what is in use', async () => {
    await put(api.url, 'entities/level-1', {});
    for (let i = 2; i <= 8; i++)
      await put(api.url, `entities/level-${i}`, { parent: `level-${i - 1}` });
    const ninth = await request('PUT', `${api.url}/v1/admin/entities/level-9`, {
      parent: 'level-8',
    });
    const cycle = await request('PUT', `${api.url}/v1/admin/entities/level-1`, {
      parent: 'level-3',
    });
    const parentInUse = await request('DELETE', `${api.url}/v1/admin/entities/level-4`);
    await put(api.url, 'plans/used', {});
    await put(api.url, 'entities/uses-plan', { plan: 'used' });
    const planInUse = await request('DELETE', `${api.url}/v1/admin/plans/used`);

    expect(ninth).toMatchObject({ status: 400, body: { field: 'parent' } });
    expect(cycle).toMatchObject({ status: 400, body: { field: 'parent' } });
    expect(parentInUse).toMatchObject({ status: 409, body: { code: 'conflict' } });
    expect(planInUse).toMatchObject({ status: 409, body: { code: 'conflict' } });
    expect(ninth.body.detail).toContain('at most 8');
  });

  it('counts the levels below an entity that moves', async () => {
    await put(api.url, 'entities/sub-top', {});
    await put(api.url, 'entities/sub-mid', { parent: 'sub-top' });
    await put(api.url, 'entities/sub-leaf', { parent: 'sub-mid' });
    for (let i = 1; i <= 6; i++)
      await put(api.url, `entities/chain-${i}`, i === 1 ? {} : { parent: `chain-${i - 1}` });

    const tooDeep = await request('PUT', `${api.url}/v1/admin/entities/sub-top`, {
      parent: 'chain-6',
    });
    const fits = await request('PUT', `${api.url}/v1/admin/entities/sub-top`, {
      parent: 'chain-5',
    });

    expect(tooDeep).toMatchObject({ status: 400, body: { field: 'parent' } });
    expect(tooDeep.body.detail).toContain('9 levels');
    expect(fits.status).toBe(200);
  });
});

describe('prices', () => {
  const budget = [
    { name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000_000, window: 'month' },
  ] as const;

  it('computes cost exactly for $0.15 per million tokens, rounding the total up once', async () => {
    await put(api.url, 'resources/cheap-model', {
      price: { input: 0.15, output: '0.60', cached_input: '0.075' },
    });
    const cost = async (usage: Record<string, number>) => {
      const res = await acquire(api.url, {
        entity: `payer-${Object.values(usage).join('-')}`,
        resource: 'cheap-model',
        usage,
        limits: budget,
      });
      return 1_000_000_000 - (limitOf(res.body, 'entity', 'usd')?.remaining ?? Number.NaN);
    };

    expect(await cost({ input_tokens: 1_000 })).toBe(150);
    expect(await cost({ input_tokens: 7 })).toBe(2); // 1.05 → 2
    expect(await cost({ input_tokens: 1_000_001 })).toBe(150_001); // 150,000.15 → 150,001
    expect(await cost({ input_tokens: 1_000, cached_input_tokens: 400 })).toBe(120);
    expect(await cost({ input_tokens: 3, output_tokens: 3 })).toBe(3); // 0.45 + 1.8 = 2.25 → 3
  });

  it('never goes through floats: 100 tokens at $0.07 cost 7, not 8', async () => {
    await put(api.url, 'resources/float-trap', { price: { input: 0.07, output: 0.07 } });
    const res = await acquire(api.url, {
      entity: 'float-payer',
      resource: 'float-trap',
      usage: { input_tokens: 100 },
      limits: budget,
    });
    expect(limitOf(res.body, 'entity', 'usd')?.remaining).toBe(1_000_000_000 - 7);
  });

  it('charges actual usage at settlement, and refuses a cost limit with no price', async () => {
    await put(api.url, 'resources/settled-model', { price: { input: '0.15', output: '0.60' } });
    const lease = await acquire(api.url, {
      entity: 'settler',
      resource: 'settled-model',
      usage: { input_tokens: 1_000, output_tokens: 100 },
      limits: budget,
    });
    const adjusted = await request('POST', `${api.url}/v1/adjust`, {
      lease_id: lease.body.lease_id,
      usage: { output_tokens: 2_000 },
    });
    const unpriced = await acquire(api.url, {
      entity: 'settler',
      resource: 'no-price-model',
      usage: { input_tokens: 1 },
      limits: budget,
    });

    expect(adjusted.body.usage).toMatchObject({ cost_micro_usd: 150 + 1_200 });
    expect(unpriced).toMatchObject({ status: 422, body: { code: 'price_unknown' } });
  });
});

describe('admin writes', () => {
  it('store nothing when one field is bad, naming it', async () => {
    const good = { name: 'rpm', metric: 'requests', limit: 10, per: 'minute' };
    const bad = await request('PUT', `${api.url}/v1/admin/plans/half-bad`, {
      limits: [good, { ...good, name: 'tpm', burst: -1 }],
    });
    const unknownPlan = await request('PUT', `${api.url}/v1/admin/entities/orphan`, {
      plan: 'no-such-plan',
    });
    await put(api.url, 'plans/kept', { limits: [good] });
    const badUpdate = await request('PUT', `${api.url}/v1/admin/plans/kept`, {
      limits: [good],
      priority: 101,
    });
    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1000`);
    const names = (audit.body.items as { name: string }[]).map((e) => e.name);

    expect(bad).toMatchObject({ status: 400, body: { field: 'limits[1].burst' } });
    expect(unknownPlan).toMatchObject({ status: 400, body: { field: 'plan' } });
    expect(badUpdate).toMatchObject({ status: 400, body: { field: 'priority' } });
    expect((await request('GET', `${api.url}/v1/admin/plans/half-bad`)).status).toBe(404);
    expect((await request('GET', `${api.url}/v1/admin/entities/orphan`)).status).toBe(404);
    expect((await request('GET', `${api.url}/v1/admin/plans/kept`)).body).toMatchObject({
      version: 1,
      config: { limits: [good] },
    });
    expect(names).not.toContain('half-bad');
    expect(names).not.toContain('orphan');
    expect(names.filter((n) => n === 'kept')).toHaveLength(1);
  });

  it('refuse any plan with one bad field, store nothing and write no audit entry', async () => {
    const valid = {
      limits: [
        { name: 'rpm', metric: 'requests', limit: 10, per: 'minute' },
        { name: 'usd', metric: 'cost_micro_usd', limit: 5, window: 'day', timezone: 'UTC' },
      ],
      allowed_resources: ['gpt-4o*'],
      max_input_tokens: 1000,
      priority: 50,
    };
    const breakages: [string, (plan: typeof valid) => unknown][] = [
      ['limits[0].limit', (p) => ({ ...p, limits: [{ ...p.limits[0], limit: -1 }, p.limits[1]] })],
      [
        'limits[1].timezone',
        (p) => ({ ...p, limits: [p.limits[0], { ...p.limits[1], timezone: 'Mars/Base' }] }),
      ],
      ['limits[1].name', (p) => ({ ...p, limits: [p.limits[0], { ...p.limits[0] }] })],
      ['allowed_resources[0]', (p) => ({ ...p, allowed_resources: ['*gpt'] })],
      ['max_input_tokens', (p) => ({ ...p, max_input_tokens: 1.5 })],
      ['priority', (p) => ({ ...p, priority: 0 })],
      ['body', () => ['not', 'an', 'object']],
    ];
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...breakages), async ([field, breakIt]) => {
        const name = `fuzz-plan-${++n}`;
        const res = await request('PUT', `${api.url}/v1/admin/plans/${name}`, breakIt(valid));
        expect(res).toMatchObject({ status: 400, body: { code: 'invalid_request', field } });
        expect((await request('GET', `${api.url}/v1/admin/plans/${name}`)).status).toBe(404);
      }),
      { numRuns: 40, seed: 77 },
    );
    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1000`);
    const names = (audit.body.items as { name: string }[]).map((e) => e.name);
    expect(names.some((name) => name.startsWith('fuzz-plan-'))).toBe(false);
    expect((await request('PUT', `${api.url}/v1/admin/plans/fuzz-plan-ok`, valid)).status).toBe(
      201,
    );
  });

  it('are audited with who, before and after, newest first', async () => {
    const v1 = { limits: [{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' }] };
    const v2 = { ...v1, priority: 40 };
    await put(api.url, 'plans/audited', v1);
    await put(api.url, 'plans/audited', v2);
    await put(api.url, 'plans/audited', v2); // unchanged: no entry
    expect((await request('DELETE', `${api.url}/v1/admin/plans/audited`)).status).toBe(204);

    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1000`);
    const entries = (audit.body.items as { name: string }[]).filter((e) => e.name === 'audited');

    expect(entries).toEqual([
      expect.objectContaining({ action: 'delete', who: 'local', before: v2, after: null }),
      expect.objectContaining({ action: 'put', kind: 'plan', before: v1, after: v2 }),
      expect.objectContaining({ action: 'put', before: null, after: v1 }),
    ]);
  });

  it('have no URL for a name with "/", as on API Gateway (it decodes %2F before routing)', async () => {
    const res = await request('PUT', `${api.url}/v1/admin/entities/team%2Fkey`, {});
    expect(res).toMatchObject({ status: 404, body: { code: 'not_found' } });
  });

  it('chain concurrent writes: every stored version has one audit entry, before = the last after', async () => {
    const writes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request('PUT', `${api.url}/v1/admin/plans/raced`, { priority: i + 1 }),
      ),
    );
    const stored = await request('GET', `${api.url}/v1/admin/plans/raced`);
    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1000`);
    const chain = (audit.body.items as { name: string; before: unknown; after: unknown }[])
      .filter((e) => e.name === 'raced')
      .reverse(); // oldest first

    const ok = writes.filter((w) => w.status === 200 || w.status === 201);
    expect(writes.every((w) => [200, 201, 409].includes(w.status))).toBe(true);
    expect(ok.length).toBeGreaterThan(0);
    expect(chain).toHaveLength(stored.body.version as number);
    expect(chain[0]?.before).toBeNull();
    expect(chain.slice(1).map((e) => e.before)).toEqual(chain.slice(0, -1).map((e) => e.after));
    expect(chain.at(-1)?.after).toEqual(stored.body.config);
  });

  it('list with pagination', async () => {
    for (const n of [1, 2, 3, 4, 5]) await put(api.url, `resources/paged-${n}`, {});
    const names: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `&cursor=${cursor}` : '';
      const page = await request('GET', `${api.url}/v1/admin/resources?limit=2${query}`);
      names.push(...(page.body.items as { name: string }[]).map((i) => i.name));
      cursor = page.body.next as string | null;
      pages++;
    } while (cursor);

    expect(names.filter((n) => n.startsWith('paged-'))).toEqual([
      'paged-1',
      'paged-2',
      'paged-3',
      'paged-4',
      'paged-5',
    ]);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(await request('GET', `${api.url}/v1/admin/resources?limit=0`)).toMatchObject({
      status: 400,
      body: { field: 'limit' },
    });
  });
});

describe('settings and the configuration cache', () => {
  let writer: Api;
  let cached: Api;
  beforeAll(async () => {
    const table = tableName('cfg-cache');
    [writer, cached] = await Promise.all([
      startApi(table),
      startApi(table, { SLUICE_CONFIG_CACHE_MS: '1500' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([writer?.stop(), cached?.stop()]);
  });

  it('takes a change made elsewhere within the cache time, not before', async () => {
    await put(writer.url, 'entities/cached-key', {
      limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
    });
    const ask = () => acquire(cached.url, { entity: 'cached-key', resource: 'm', usage: {} });
    expect((await ask()).status).toBe(200);

    await put(writer.url, 'entities/cached-key', {
      disabled: true,
      limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
    });
    const soon = await ask();
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const later = await ask();

    expect(soon.status).toBe(200);
    expect(later).toMatchObject({ status: 403, body: { code: 'entity_disabled' } });
  });

  it('refuses unknown entities when set to, and prices cost limits by the default price', async () => {
    const budget = [{ name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000, window: 'day' }];
    const before = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });
    await put(writer.url, 'settings', {
      unknown_entities: 'refuse',
      default_price: { input: '1', output: '2' },
    });
    const walkIn = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });
    await put(writer.url, 'entities/walk-in', {});
    const registered = await acquire(writer.url, {
      entity: 'walk-in',
      resource: 'unpriced',
      usage: { input_tokens: 10 },
      limits: budget,
    });

    expect(before).toMatchObject({ status: 422, body: { code: 'price_unknown' } });
    expect(walkIn).toMatchObject({ status: 403, body: { code: 'unknown_entity' } });
    expect(limitOf(registered.body, 'entity', 'usd')?.remaining).toBe(1_000_000 - 10);
  });

  it('gives a plan its priority’s share of shared limits; a request may only lower it', async () => {
    await put(writer.url, 'plans/half', {
      priority: 50,
      limits: [{ name: 'own_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
    });
    for (const r of ['shared-a', 'shared-b']) {
      await put(writer.url, `resources/${r}`, {
        limits: [{ name: 'provider_rpm', metric: 'requests', limit: 10, per: MONTHLY }],
      });
    }
    await put(writer.url, 'entities/half-a', { plan: 'half' });
    await put(writer.url, 'entities/half-b', { plan: 'half' });
    const count = async (entity: string, resource: string, priority?: number) => {
      let ok = 0;
      for (let i = 0; i < 10; i++) {
        const res = await acquire(writer.url, {
          entity,
          resource,
          usage: {},
          ...(priority ? { priority } : {}),
        });
        if (res.status === 200) ok++;
      }
      return ok;
    };
    // Half of the provider's 10; the plan's own limit would have allowed all 10.
    expect(await count('half-a', 'shared-a', 100)).toBe(5);
    expect(await count('half-b', 'shared-b', 20)).toBe(2);
  });
});
