/**
 * Policies changed while calls are in flight, over HTTP on the local server: a lease settles at
 * the price and with the limits it was admitted under, whatever changed since.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquire, limitOf, put } from '../support/admin.js';
import { type Api, request, startApi, tableName } from '../support/api.js';

let api: Api;
beforeAll(async () => {
  api = await startApi(tableName('policies-in-flight'));
});
afterAll(async () => {
  await api?.stop();
});
let n = 0;
const budget = [{ name: 'usd', metric: 'cost_micro_usd', limit: 1_000_000_000, window: 'month' }];
const release = (lease: unknown, usage?: unknown) =>
  request('POST', `${api.url}/v1/release`, { lease_id: lease, ...(usage ? { usage } : {}) });
const del = (path: string) => request('DELETE', `${api.url}/v1/admin/${path}`);

describe('a lease in flight', () => {
  it('settles a batch call at its acquire price after the discount and price change', async () => {
    const model = `pr-batch-${++n}`;
    await put(api.url, `resources/${model}`, {
      price: { input: '2', output: '8', batch_discount: '0.5' },
    });
    const lease = await acquire(api.url, {
      entity: `pr-e-${n}`,
      resource: model,
      usage: { input_tokens: 1_000, output_tokens: 1_000 },
      limits: budget,
      batch: true,
    });
    expect(lease.status).toBe(200);
    await put(api.url, `resources/${model}`, { price: { input: '20', output: '80' } });
    const released = await release(lease.body.lease_id, {
      input_tokens: 1_000,
      output_tokens: 1_000,
    });
    expect(released.status).toBe(200);
    expect(released.body.usage).toMatchObject({ cost_micro_usd: 5_000 });
  });

  it('settles at its acquire price after the resource is deleted', async () => {
    const model = `pr-gone-${++n}`;
    await put(api.url, `resources/${model}`, { price: { input: '1', output: '3' } });
    const lease = await acquire(api.url, {
      entity: `pr-e-${n}`,
      resource: model,
      usage: { input_tokens: 100 },
      limits: budget,
    });
    await del(`resources/${model}`);
    const released = await release(lease.body.lease_id, { input_tokens: 100, output_tokens: 100 });
    expect(released.status).toBe(200);
    expect(released.body.usage).toMatchObject({ cost_micro_usd: 400 });
  });

  it('settles a fallback at its price after the plan and the fallback change', async () => {
    const big = `pr-big-${++n}`;
    const small = `pr-small-${n}`;
    const plan = `pr-plan-${n}`;
    await put(api.url, `resources/${big}`, { price: { input: '10', output: '30' } });
    await put(api.url, `resources/${small}`, { price: { input: '1', output: '3' } });
    await put(api.url, `plans/${plan}`, {
      allowed_resources: [small],
      fallbacks: { [big]: [small] },
      limits: budget,
    });
    const entity = `pr-e-${n}`;
    await put(api.url, `entities/${entity}`, { plan });
    const lease = await acquire(api.url, { entity, resource: big, usage: { input_tokens: 100 } });
    expect(lease.body).toMatchObject({ allowed: true, resource: small, fell_back: true });
    await put(api.url, `plans/${plan}`, { limits: budget });
    await put(api.url, `resources/${small}`, { price: { input: '100', output: '300' } });
    const released = await release(lease.body.lease_id, { input_tokens: 100, output_tokens: 100 });
    expect(released.status).toBe(200);
    expect(released.body.usage).toMatchObject({ cost_micro_usd: 400 });
  });

  it('settles a lease taken under a shadow limit made enforcing, then removed', async () => {
    const entity = `pr-shadow-${++n}`;
    const tpm = { name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 };
    const rpm = { name: 'rpm', metric: 'requests', limit: 1_000, per: 2_592_000 };
    await put(api.url, `entities/${entity}`, { limits: [rpm, { ...tpm, mode: 'shadow' }] });
    const one = await acquire(api.url, { entity, resource: 'm', usage: { tokens: 900 } });
    const two = await acquire(api.url, { entity, resource: 'm', usage: { tokens: 900 } });
    expect(one.status).toBe(200);
    expect(two.status).toBe(200);
    expect(two.body.shadow_violations).toEqual([expect.objectContaining({ name: 'tpm' })]);
    expect(limitOf(two.body, 'entity', 'tpm')).toBeUndefined();
    await put(api.url, `entities/${entity}`, { limits: [rpm, tpm] });
    const released = await release(one.body.lease_id, { tokens: 2_000 });
    expect(released.status).toBe(200);
    expect(released.body.usage).toMatchObject({ tokens: 2_000 });
    await put(api.url, `entities/${entity}`, { limits: [rpm] });
    const again = await release(two.body.lease_id, { tokens: 5 });
    expect(again.status).toBe(200);
    expect(limitOf(again.body, 'entity', 'tpm')).toBeUndefined();
  });
});

describe('callers changed on one server', () => {
  const ACCOUNT = '111122223333';
  const A = `arn:aws:sts::${ACCOUNT}:assumed-role/team-a-api/s`;
  const B = `arn:aws:sts::${ACCOUNT}:assumed-role/team-b-api/s`;
  const env = { SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: '1', SLUICE_CONFIG_CACHE_MS: '1000' };
  let one: Api;
  let two: Api;
  beforeAll(async () => {
    const table = tableName('policy-review-callers');
    [one, two] = await Promise.all([startApi(table, env), startApi(table, env)]);
  });
  afterAll(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
  });
  const as = (server: Api, who: string, route: string, body: unknown) =>
    request('POST', `${server.url}/v1/${route}`, body, 'application/json', {
      'x-sluice-principal': who,
    });

  it('refuses a dropped principal on the other server once its cache window has passed', async () => {
    const org = `pr-org-${++n}`;
    const key = `pr-key-${n}`;
    const limits = [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 }];
    await put(one.url, `entities/${org}`, { callers: [`arn:aws:iam::*:role/team-*`] });
    await put(one.url, `entities/${key}`, { parent: org, limits });
    const lease = await as(two, B, 'acquire', {
      entity: key,
      resource: 'm',
      usage: { tokens: 10 },
    });
    expect(lease.status).toBe(200);
    const fb = { entity: key, resource: 'm', usage: { tokens: 10 }, fallback: ['m2'] };
    expect((await as(two, B, 'acquire', fb)).status).toBe(200);
    await put(one.url, `entities/${org}`, { callers: [`arn:aws:iam::*:role/team-a-*`] });
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    const body = { lease_id: lease.body.lease_id, usage: { tokens: 1 } };
    expect((await as(two, B, 'adjust', body)).status).toBe(403);
    expect((await as(two, B, 'release', body)).status).toBe(403);
    expect((await as(two, B, 'acquire', fb)).status).toBe(403);
    expect((await as(two, B, 'available', { entity: key, resource: 'm2' })).status).toBe(403);
    const usage = await request('GET', `${two.url}/v1/usage?entity=${key}`, undefined, undefined, {
      'x-sluice-principal': B,
    });
    expect(usage.status).toBe(403);
    expect((await as(two, A, 'release', body)).status).toBe(200);
  });
});
