/**
 * Leases carry the limits they took from, so how large one may be is bounded by what a settle
 * accepts. A decision too large to settle is refused before anything is written; one just
 * inside the bound is answered with headers a client can read, and settles.
 */
import { describe, expect, it } from 'vitest';
import { limitOf, put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

const api = fileApi('lease-size');

const LEVELS = 8; // the deepest hierarchy
/** `length` characters made from `seed`, unlike those of any other seed. */
const long = (seed: string, length: number) => {
  let out = '';
  for (let i = 0; out.length < length; i++) out += `${seed}${i.toString(36)}x`;
  return out.slice(0, length);
};
/** `count` calendar quotas with names of `nameLength` characters. */
const quotas = (prefix: string, count: number, nameLength: number) =>
  Array.from({ length: count }, (_, i) => ({
    name: long(`${prefix}${i}n`, nameLength),
    metric: 'tokens',
    limit: 9_007_199_254_740_991,
    window: 'month' as const,
    timezone: 'America/Argentina/ComodRivadavia',
  }));

/** A hierarchy of 8 entities, each on a plan of its own, and a resource with its own limits. */
async function hierarchy(tag: string, perLevel: number, nameLength: number) {
  const ids = Array.from({ length: LEVELS }, (_, level) => long(`${tag}${level}-`, 128));
  for (let level = LEVELS - 1; level >= 0; level--) {
    await put(api.url, `plans/${tag}-${level}`, {
      limits: quotas(`${tag}p${level}`, perLevel, nameLength),
    });
    await put(api.url, `entities/${encodeURIComponent(ids[level] as string)}`, {
      plan: `${tag}-${level}`,
      limits: quotas(`${tag}e${level}`, perLevel, nameLength),
      ...(level < LEVELS - 1 ? { parent: ids[level + 1] } : {}),
    });
  }
  const resource = long(`${tag}-model-`, 128);
  await put(api.url, `resources/${encodeURIComponent(resource)}`, {
    limits: quotas(`${tag}r`, perLevel, nameLength),
  });
  return { entity: ids[0] as string, resource };
}

describe('how large a lease may be', () => {
  it("refuses a decision whose stored limits no lease can carry as the configuration's fault, and writes nothing", async () => {
    // 16 plan limits and 16 overrides of 64-character names on every level: 272 limits.
    const { entity, resource } = await hierarchy('big', 16, 64);
    const refused = await request('POST', `${api.url}/v1/acquire`, {
      entity,
      resource,
      usage: { tokens: 1_000 },
    });

    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'configuration_invalid' });
    expect(refused.body.detail).toMatch(/more than one lease can carry/);
    const after = await request('POST', `${api.url}/v1/available`, { entity, resource });
    expect(after.status).toBe(200);
    const first = (after.body.limits as { name: string; remaining: number; limit: number }[])[0];
    expect(first?.remaining).toBe(first?.limit); // nothing taken
  });

  it('names the inline limits when they are what would make the lease too long', async () => {
    // 16 inline limits of long names on top of stored ones that fit: a request no lease could carry.
    const inline = Array.from({ length: 16 }, (_, i) => ({
      name: long(`inline${i}n`, 64),
      metric: 'tokens',
      limit: 9_007_199_254_740_991,
      window: 'month' as const,
      timezone: 'America/Argentina/ComodRivadavia',
    }));
    const { entity, resource } = await hierarchy('inl', 6, 24); // fits a lease on its own
    const refused = await request('POST', `${api.url}/v1/acquire`, {
      entity,
      resource,
      usage: { tokens: 1 },
      limits: inline,
    });

    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: 'invalid_request', field: 'limits' });
  });

  it('names usage when the usage is what would make the lease too long', async () => {
    await put(api.url, 'entities/many-metrics', {
      limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
    });
    // 2,000 metrics of 16 characters: a valid usage map, within the 64 KB body, that no lease
    // could carry.
    const usage = Object.fromEntries(
      Array.from({ length: 2_000 }, (_, i) => [`metric_${String(i).padStart(9, '0')}`, 1]),
    );
    const refused = await request('POST', `${api.url}/v1/acquire`, {
      entity: 'many-metrics',
      resource: 'm',
      usage,
    });

    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: 'invalid_request', field: 'usage' });
    const after = await request('POST', `${api.url}/v1/available`, {
      entity: 'many-metrics',
      resource: 'm',
    });
    expect(limitOf(after.body, 'entity', 'rpm')?.remaining).toBe(100); // nothing taken
  });

  it('answers a decision over 100 limits with readable headers, and settles its lease', async () => {
    const { entity, resource } = await hierarchy('mid', 6, 24);
    const acquired = await request('POST', `${api.url}/v1/acquire`, {
      entity,
      resource,
      usage: { tokens: 1_000 },
    });
    expect(acquired.status).toBe(200);
    const limits = acquired.body.limits as unknown[];
    const leaseId = String(acquired.body.lease_id);
    console.log(`${limits.length} limits, lease ${leaseId.length} characters`);
    expect(limits.length).toBeGreaterThan(100);
    // The headers name the 16 tightest limits; the body names them all.
    expect(acquired.headers.get('ratelimit')?.split(', ')).toHaveLength(16);
    expect(acquired.headers.get('ratelimit-policy')?.split(', ')).toHaveLength(16);

    const released = await request('POST', `${api.url}/v1/release`, {
      lease_id: leaseId,
      usage: { tokens: 400 },
    });
    expect(released.status).toBe(200);
    const name = (limits[0] as { name: string }).name;
    const after = await request('POST', `${api.url}/v1/available`, { entity, resource });
    expect(limitOf(after.body, 'entity', name)?.remaining).toBe(9_007_199_254_740_991 - 400);
  });
});
