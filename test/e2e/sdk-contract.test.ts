/**
 * The SDK against the local API through a `fetch` that checks every answer against
 * docs/openapi.json (test/support/openapi.ts): each method of `SluiceClient` and `SluiceAdmin`,
 * its admissions, refusals and errors, and what it hands its caller from them (camelCase, codes
 * as sent). The other e2e files leave the SDK on its own transport (Node's HTTP client); the
 * answers they get are the shapes the direct requests of the tier check.
 */
import { SluiceAdmin, SluiceClient, SluiceRequestError } from '@sluice/client';
import { storedConfigToWire } from '@sluice/client/wire';
import { afterEach, describe, expect, it } from 'vitest';
import { fileApi, request } from '../support/api.js';
import { validatingFetch } from '../support/openapi.js';

const api = fileApi('sdk-contract');
const fetch = validatingFetch();
afterEach(() => {
  expect(fetch.mismatches).toEqual([]);
});
const sluice = () => new SluiceClient({ endpoint: api.url, fetch, onUnavailable: 'deny' });
const admin = () => new SluiceAdmin({ endpoint: api.url, fetch });

const limits = [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 }];

describe('SluiceAdmin through a checked fetch', () => {
  it('writes, reads, lists, resets, rotates, audits and deletes, each answer as described', async () => {
    const created = await admin().put('resource', 'contract-small', {
      price: { input: '1', output: '3' },
    });
    const replaced = await admin().put('resource', 'contract-small', {
      price: { input: '1', output: '4' },
    });
    await admin().put('plan', 'contract-plan', { limits, fallbacks: {} });
    const settings = await admin().putSettings({ unknown_entities: 'allow' });
    const got = await admin().get('resource', 'contract-small');
    const missing = await admin().get('plan', 'contract-none');
    const listed = await admin().list('resource');
    const reset = await admin().reset('contract-key');
    const rotated = await admin().rotateSigningKey();
    const audit = await admin().audit({ limit: 5 });
    const top = await admin().top({ by: 'denied' });
    const alerts = await admin().alerts({ limit: 5 });
    await admin().delete('resource', 'contract-small');

    expect(created).toMatchObject({ kind: 'resource', version: 1, changed: true });
    expect(replaced).toMatchObject({ version: 2, updatedBy: 'local' });
    expect(replaced.updatedAt).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(settings).toMatchObject({ kind: 'settings', config: { unknown_entities: 'allow' } });
    expect(storedConfigToWire(got ?? replaced)).toMatchObject({
      updated_at: replaced.updatedAt,
      updated_by: 'local',
    });
    expect(missing).toBeUndefined();
    expect(listed.map((s) => s.name)).toContain('contract-small');
    expect(reset).toEqual({ entity: 'contract-key', cleared: 0 });
    expect(rotated.current).not.toBe(rotated.previous);
    expect(audit.items[0]).toMatchObject({ action: 'rotate', kind: 'signing_key' });
    expect(top).toMatchObject({ by: 'denied', items: [] });
    expect(alerts.items).toEqual([]);
    expect(await admin().get('resource', 'contract-small')).toBeUndefined();
  });

  it('throws a refused write with its code, status and field', async () => {
    const refused = admin().put('plan', 'contract-bad', { limits: [{ name: 'x' }] });

    await expect(refused).rejects.toBeInstanceOf(SluiceRequestError);
    await expect(refused).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    await expect(refused).rejects.toHaveProperty('field', expect.stringMatching(/^limits\[0\]/));
  });

  it('writes on the version it read: entity tags, a stale one refused, create only', async () => {
    const doc = { limits: [{ name: 'rpm', metric: 'requests', limit: 10, per: 'minute' }] };
    const created = await admin().put('entity', 'contract-tagged', doc, { ifNoneMatch: '*' });
    const read = await admin().get('entity', 'contract-tagged');
    expect(created.etag).toMatch(/^"1-/);
    expect(read?.etag).toBe(created.etag);

    const again = admin().put('entity', 'contract-tagged', doc, { ifNoneMatch: '*' });
    await expect(again).rejects.toMatchObject({ code: 'precondition_failed', status: 412 });
    const edited = { limits: [{ ...doc.limits[0], limit: 20 }] };
    const second = await admin().put('entity', 'contract-tagged', edited, {
      ifMatch: created.etag ?? '',
    });
    expect(second).toMatchObject({ version: 2, etag: expect.stringMatching(/^"2-/) });
    // The first version's tag no longer matches: neither a write nor a delete goes through.
    const stale = { ifMatch: created.etag ?? '' };
    await expect(admin().put('entity', 'contract-tagged', doc, stale)).rejects.toMatchObject({
      code: 'precondition_failed',
    });
    await expect(admin().delete('entity', 'contract-tagged', stale)).rejects.toMatchObject({
      code: 'precondition_failed',
    });
    expect((await admin().get('entity', 'contract-tagged'))?.version).toBe(2);
    // A list of tags matches when one of them does.
    await admin().delete('entity', 'contract-tagged', {
      ifMatch: [created.etag ?? '', second.etag ?? ''],
    });
    expect(await admin().get('entity', 'contract-tagged')).toBeUndefined();

    // Settings never written carry "0"; a write on it stores the first version.
    const settings = await admin().settings();
    const stored = await admin().putSettings({}, { ifMatch: settings.etag ?? '' });
    expect(stored.etag).not.toBe(settings.etag);

    // The audit trail of one entity: only its entries.
    const trail = await admin().audit({ entity: 'contract-tagged', limit: 10 });
    expect(trail.items.map((e) => [e.action, e.name])).toEqual([
      ['delete', 'contract-tagged'],
      ['put', 'contract-tagged'],
      ['put', 'contract-tagged'],
    ]);
    expect((await admin().alerts({ entity: 'contract-tagged' })).items).toEqual([]);
  });
});

describe('SluiceClient through a checked fetch', () => {
  it('acquires (falling back), adjusts, releases and reads what is available and used', async () => {
    await admin().put('resource', 'contract-large', { price: { input: '10', output: '30' } });
    await admin().put('resource', 'contract-mini', { price: { input: '1', output: '3' } });
    const ask = { entity: 'contract-a', usage: { input_tokens: 800 }, limits };

    const first = await sluice().acquire({ ...ask, resource: 'contract-large' });
    const fell = await sluice().acquire({
      ...ask,
      resource: 'contract-large',
      fallback: ['contract-mini'],
    });
    if (!first.allowed || !fell.allowed) throw new Error('refused');
    const adjusted = await sluice().adjust(fell.leaseId, { input_tokens: 500 });
    const released = await sluice().release(fell.leaseId, { input_tokens: 600, output_tokens: 10 });
    const givenBack = await sluice().release(first.leaseId);
    const available = await sluice().available({
      entity: 'contract-a',
      resource: 'contract-mini',
      usage: { tokens: 100 },
      limits,
    });
    const usage = await sluice().usage({ entity: 'contract-a', granularity: 'hour' });

    expect(first).toMatchObject({ resource: 'contract-large', fellBack: false, degraded: false });
    expect(fell).toMatchObject({ resource: 'contract-mini', fellBack: true });
    expect(fell.limits[0]).toMatchObject({
      name: 'tpm',
      remaining: 200,
      resetMs: expect.any(Number),
    });
    expect(adjusted).toMatchObject({ settled: false, usage: { input_tokens: 500 } });
    expect(released).toMatchObject({ settled: true, usage: { tokens: 610 } });
    expect(givenBack).toMatchObject({ settled: true });
    expect(available).toMatchObject({ retryAfterMs: 0, degraded: false });
    expect(usage).toMatchObject({ entity: 'contract-a', granularity: 'hour' });
  });

  it('refuses with the code Sluice sent: rate_limited, exceeds_capacity, context_too_large', async () => {
    await admin().put('plan', 'contract-small-context', { max_input_tokens: 100 });
    await admin().put('entity', 'contract-c', { plan: 'contract-small-context' });
    const ask = { resource: 'contract-mini', limits };

    const taken = await sluice().acquire({ ...ask, entity: 'contract-b', usage: { tokens: 900 } });
    const limited = await sluice().acquire({
      ...ask,
      entity: 'contract-b',
      usage: { tokens: 900 },
    });
    const tooLarge = await sluice().acquire({
      ...ask,
      entity: 'contract-b',
      usage: { tokens: 5_000 },
    });
    const tooLong = await sluice().acquire({
      ...ask,
      entity: 'contract-c',
      usage: { input_tokens: 500 },
    });

    expect(taken.allowed).toBe(true);
    expect(limited).toMatchObject({ allowed: false, code: 'rate_limited', degraded: false });
    expect(limited.allowed || limited.retryAfterMs).toBeGreaterThan(0);
    expect(limited.allowed || limited.violations[0]).toMatchObject({ name: 'tpm', requested: 900 });
    expect(tooLarge).toMatchObject({
      allowed: false,
      code: 'exceeds_capacity',
      retryAfterMs: null,
    });
    expect(tooLong).toMatchObject({ allowed: false, code: 'context_too_large', degraded: false });
  });

  it('throws what is not a refusal: a bad field, an unknown lease', async () => {
    const bad = sluice().acquire({
      entity: 'contract-d',
      resource: 'contract-mini',
      usage: { tokens: 1 },
      fallback: ['contract-mini'],
    });
    const unknown = sluice().release('not-a-lease');

    await expect(bad).rejects.toMatchObject({ code: 'invalid_request', field: 'fallback[0]' });
    await expect(unknown).rejects.toMatchObject({ code: 'lease_not_found', status: 404 });
  });
});

describe('the fallback list', () => {
  it('is refused by the schema when it names the resource or one resource twice', async () => {
    const ask = { entity: 'contract-e', resource: 'contract-mini', usage: { tokens: 1 } };

    const self = await request('POST', `${api.url}/v1/acquire`, {
      ...ask,
      fallback: ['contract-mini'],
    });
    const twice = await request('POST', `${api.url}/v1/acquire`, {
      ...ask,
      fallback: ['contract-large', 'contract-large'],
    });

    expect(self.body).toMatchObject({
      status: 400,
      field: 'fallback[0]',
      detail: 'fallback[0]: contract-mini is already tried before it',
    });
    expect(twice.body).toMatchObject({
      field: 'fallback[1]',
      detail: 'fallback[1]: contract-large is already tried before it',
    });
  });
});
