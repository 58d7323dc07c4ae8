/**
 * `available` judges each scope at the plan's priority, as acquire does: it never says a usage
 * fits where acquire would refuse it.
 */
import { describe, expect, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

// 30-day periods: refill during a test is far below one unit.
const MONTHLY = 2_592_000;

const api = fileApi('avail-prio');

describe('available with a plan priority', () => {
  it('available says never or later where the plan priority makes acquire refuse', async () => {
    await put(api.url, 'plans/half', { priority: 50 });
    await put(api.url, 'entities/prio-org', {
      limits: [{ name: 'org_tokens', metric: 'tokens', limit: 1_000, per: MONTHLY }],
    });
    await put(api.url, 'entities/prio-key', { plan: 'half', parent: 'prio-org' });
    const body = { entity: 'prio-key', resource: 'm1', usage: { tokens: 800 } };
    const seen = await request('POST', `${api.url}/v1/available`, body);
    const taken = await acquire(api.url, body);
    expect(taken.status).toBe(422); // 800 never fits half of 1,000
    expect(seen.status).toBe(200);
    expect(seen.body.retry_after_ms).toBeNull();

    // 400 fits the share; after 300 taken it no longer fits now.
    expect((await acquire(api.url, { ...body, usage: { tokens: 300 } })).status).toBe(200);
    const later = { ...body, usage: { tokens: 400 } };
    const seenLater = await request('POST', `${api.url}/v1/available`, later);
    expect((await acquire(api.url, later)).status).toBe(429);
    expect(seenLater.body.retry_after_ms).toBeGreaterThan(0);
  });
});
