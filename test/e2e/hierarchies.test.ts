/**
 * Hierarchies and shared limits over HTTP: keys of one project under concurrency, provider-wide limits, state kept through limit changes and parent moves, resets, and the hierarchy rules.
 */
import { describe, expect, it } from 'vitest';
import { acquire, acquireAsClient, limitOf, put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

// 30-day periods: refill during a test is far below one unit, so counts can be asserted exactly.
const MONTHLY = 2_592_000;

const api = fileApi('hier');

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
        acquireAsClient(api.url, { entity: `tenant-${i % 6}`, resource: 'provider-x', usage: {} }),
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
