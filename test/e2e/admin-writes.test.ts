/**
 * Admin writes over HTTP: validation that stores nothing, the audit trail, concurrent writes, names without a URL, pagination.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { put } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

const api = fileApi('adm');

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
      { numRuns: 40, seed: 77, endOnFailure: true },
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
  it('write on the version they read: a stale If-Match or a second create is 412, nothing written', async () => {
    const url = `${api.url}/v1/admin/plans/versioned`;
    const limits = (limit: number) => ({
      limits: [{ name: 'rpm', metric: 'requests', limit, per: 'minute' }],
    });
    const put = (body: unknown, headers: Record<string, string>) =>
      request('PUT', url, body, 'application/json', headers);
    const created = await put(limits(1), { 'if-none-match': '*' });
    expect(created.status).toBe(201);
    const first = created.headers.get('etag') ?? '';
    expect(first).toMatch(/^"1-[\w-]+"$/);
    expect(await put(limits(2), { 'if-none-match': '*' })).toMatchObject({
      status: 412,
      body: { code: 'precondition_failed' },
    });
    // Two editors read version 1; the first saves, the second's save is refused.
    const read = await request('GET', url);
    expect(read.headers.get('etag')).toBe(first);
    const saved = await put(limits(3), { 'if-match': first });
    expect(saved).toMatchObject({ status: 200, body: { version: 2 } });
    const second = saved.headers.get('etag') ?? '';
    expect(second).toMatch(/^"2-[\w-]+"$/);
    expect((await request('GET', url)).headers.get('etag')).toBe(second); // as the PUT said
    const stale = await put(limits(4), { 'if-match': first });
    expect(stale).toMatchObject({ status: 412, body: { code: 'precondition_failed' } });
    expect(stale.body.detail).toContain('version 2');
    expect(
      await request('DELETE', url, undefined, 'application/json', { 'if-match': first }),
    ).toMatchObject({ status: 412 });
    expect((await request('GET', url)).body).toMatchObject({ version: 2, config: limits(3) });
    // A list holds when any of its tags matches (a weak tag never does); `*` when one is stored.
    expect((await put(limits(5), { 'if-match': `W/${second}, ${first}` })).status).toBe(412);
    expect((await put(limits(5), { 'if-match': `${first}, ${second}` })).status).toBe(200);
    expect((await put(limits(6), { 'if-match': '*' })).status).toBe(200);
    // Tags compare as text: version 4 is not "04"; a bad condition is a 400 naming its header.
    expect((await put(limits(7), { 'if-match': '"04"' })).status).toBe(412);
    for (const [name, value] of [
      ['If-Match', '4'],
      ['If-Match', '"4" "5"'],
      ['If-Match', ','],
      ['If-None-Match', '"4"'],
    ] as const)
      expect(await put(limits(8), { [name]: value })).toMatchObject({
        status: 400,
        body: { field: name },
      });
    const audit = await request('GET', `${api.url}/v1/admin/audit?limit=1000`);
    const entries = (audit.body.items as { name: string }[]).filter((e) => e.name === 'versioned');
    expect(entries).toHaveLength(4);
    const last = (await request('GET', url)).headers.get('etag') ?? '';
    expect(
      await request('DELETE', url, undefined, 'application/json', { 'if-match': last }),
    ).toMatchObject({ status: 204 });
  });

  it('refuse a tag of a document deleted and created again, and never create with If-Match', async () => {
    const url = `${api.url}/v1/admin/plans/again`;
    const plan = (limit: number) => ({
      limits: [{ name: 'rpm', metric: 'requests', limit, per: 'minute' }],
    });
    const put = (body: unknown, headers: Record<string, string>) =>
      request('PUT', url, body, 'application/json', headers);
    const opened = (await put(plan(1), { 'if-none-match': '*' })).headers.get('etag') ?? '';
    // Someone else deletes it and creates another under the same name: version 1 again.
    expect(
      await request('DELETE', url, undefined, 'application/json', { 'if-match': opened }),
    ).toMatchObject({ status: 204 });
    const again = await put(plan(999), { 'if-none-match': '*' });
    expect(again.body).toMatchObject({ version: 1 });
    expect(again.headers.get('etag')).not.toBe(opened);
    // The first editor's save, on the tag it read, is refused: that document is gone.
    expect(await put(plan(2), { 'if-match': opened })).toMatchObject({ status: 412 });
    expect((await request('GET', url)).body).toMatchObject({ config: plan(999) });
    // No tag matches a document that is not stored: If-Match never creates.
    const nowhere = `${api.url}/v1/admin/plans/never-stored`;
    const tagged = await request('PUT', nowhere, plan(1), 'application/json', {
      'if-match': '"0", "1"',
    });
    expect(tagged).toMatchObject({ status: 412 });
    expect((await request('GET', nowhere)).status).toBe(404);
    // The settings are tagged "0" until first stored.
    const settings = `${api.url}/v1/admin/settings`;
    expect((await request('GET', settings)).headers.get('etag')).toBe('"0"');
    const stored = await request('PUT', settings, {}, 'application/json', { 'if-match': '"0"' });
    expect(stored.status).toBe(201);
    expect(
      (await request('PUT', settings, {}, 'application/json', { 'if-match': '"0"' })).status,
    ).toBe(412);
  });

  it('let exactly one of many concurrent writers on one version through', async () => {
    const url = `${api.url}/v1/admin/resources/contended`;
    const created = await request('PUT', url, {}, 'application/json', { 'if-none-match': '*' });
    const tag = created.headers.get('etag') ?? '';
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        request('PUT', url, { description: `writer ${i}` }, 'application/json', {
          'if-match': tag,
        }),
      ),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 412, 412, 412, 412, 412, 412, 412]);
    expect((await request('GET', url)).body).toMatchObject({ version: 2 });
  });
});
