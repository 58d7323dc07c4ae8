/**
 * An entity deleted, over HTTP on `npm start`: the definitions it had (an override) no longer
 * apply, although its items were converted to them.
 */
import { describe, expect, it } from 'vitest';
import { acquire, put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

// 30-day periods: refill during a test is far below one unit, so counts are exact.
const MONTHLY = 2_592_000;

const api = fileApi('entity-deleted');

describe('an entity deleted', () => {
  it('takes effect at once on the local server: its removed override no longer applies', async () => {
    await put(api.url, 'plans/default', {
      limits: [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: MONTHLY }],
    });
    const call = (tokens: number) =>
      acquire(api.url, { entity: 'deleted-key', resource: 'm1', usage: { tokens } });
    expect((await call(10)).status).toBe(200); // the item, at the plan's 1,000
    await put(api.url, 'entities/deleted-key', {
      limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: MONTHLY }],
    });
    expect((await call(10)).status).toBe(200); // converted to the override's 100,000
    const deleted = await request('DELETE', `${api.url}/v1/admin/entities/deleted-key`);
    expect(deleted.status).toBe(204);

    // The entity has no record: the default plan's 1,000 a month applies, 20 of it used.
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(900)).status);

    expect(statuses).toEqual([200, 429, 429]);
  });
});
