import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { SluiceClient } from '@sluice/client';
import { localClient } from '@sluice/local';
import fc from 'fast-check';
import { describe, expect, inject, it } from 'vitest';
import { fileApi, post, request, withNewTable } from '../support/api.js';
import { tpm30Days as tpm } from '../support/limits.js';

const api = fileApi('e2e');
let n = 0;

const entity = () => `key-${++n}`;

async function itemCount(table: string): Promise<number> {
  const client = localClient(inject('dynamoEndpoint'));
  const out = await client.send(new ScanCommand({ TableName: table, Select: 'COUNT' }));
  client.destroy();
  return out.Count ?? 0;
}

describe('the SDK against the local API', () => {
  it('runs the whole loop: acquire, adjust while streaming, release', async () => {
    const sluice = new SluiceClient({ endpoint: api.url });
    const e = entity();
    const request = {
      entity: e,
      resource: 'gpt-4o',
      usage: { input_tokens: 1_000, output_tokens: 500 },
      limits: [tpm(10_000)],
    };

    const lease = await sluice.acquire(request);
    if (!lease.allowed) throw new Error('expected admission');
    const adjusted = await sluice.adjust(lease.leaseId, { output_tokens: 800 });
    const released = await sluice.release(lease.leaseId, { output_tokens: 900 });
    const after = await sluice.available({ entity: e, resource: 'gpt-4o', limits: [tpm(10_000)] });

    expect(lease).toMatchObject({ allowed: true, waitMs: 0, degraded: false });
    expect(adjusted.usage).toMatchObject({ tokens: 1_800 });
    expect(released).toMatchObject({ settled: true, usage: { tokens: 1_900 } });
    expect(after.limits[0]?.remaining).toBe(8_100);
  });

  it('gives the reservation back when the wrapped call throws', async () => {
    const sluice = new SluiceClient({ endpoint: api.url });
    const e = entity();
    const request = {
      entity: e,
      resource: 'gpt-4o',
      usage: { tokens: 4_000 },
      limits: [tpm(10_000)],
    };

    await expect(
      sluice.withLease(request, async () => Promise.reject(new Error('provider down'))),
    ).rejects.toThrow('provider down');

    const after = await sluice.available({ entity: e, resource: 'gpt-4o', limits: [tpm(10_000)] });
    expect(after.limits[0]?.remaining).toBe(10_000);
  });

  it('settles a stream with running totals and gives back an aborted one', async () => {
    const sluice = new SluiceClient({ endpoint: api.url });
    const e = entity();
    const request = {
      entity: e,
      resource: 'gpt-4o',
      usage: { tokens: 1_000 },
      limits: [tpm(10_000)],
    };
    const a = await sluice.acquire(request);
    const b = await sluice.acquire(request);
    if (!a.allowed || !b.allowed) throw new Error('expected admission');

    const stream = sluice.stream(a.leaseId, { minIntervalMs: 10 });
    for (const tokens of [200, 700, 1_400]) {
      stream.update({ tokens });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await stream.end();
    await sluice.stream(b.leaseId).abort();

    const after = await sluice.available({ entity: e, resource: 'gpt-4o', limits: [tpm(10_000)] });
    expect(after.limits[0]?.remaining).toBe(8_600);
  });

  it('reserves a place with max_wait_ms and says how long to wait', async () => {
    const sluice = new SluiceClient({ endpoint: api.url });
    const e = entity();
    // Two a minute: a place frees every 30 s, far longer than any machine takes for three calls.
    const limits = [{ name: 'rpm', metric: 'requests', limit: 2, per: 'minute' as const }];
    await sluice.acquire({ entity: e, resource: 'm', usage: {}, limits });
    await sluice.acquire({ entity: e, resource: 'm', usage: {}, limits });

    const third = await sluice.acquire({
      entity: e,
      resource: 'm',
      usage: {},
      limits,
      maxWaitMs: 60_000,
    });

    expect(third.allowed && third.waitMs).toBeGreaterThan(0);
    expect(third.allowed && third.waitMs).toBeLessThanOrEqual(30_000);
  });
});

describe('signing', () => {
  it('signs every request with SigV4 for execute-api when credentials are in play', async () => {
    const seen: Headers[] = [];
    const sluice = new SluiceClient({
      endpoint: api.url,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-real-secret' },
      fetch: async (input, init) => {
        seen.push(new Headers(init?.headers));
        return fetch(input, init);
      },
    });

    const result = await sluice.available({ entity: entity(), resource: 'm', limits: [tpm(10)] });

    expect(result.degraded).toBe(false);
    const authorization = seen[0]?.get('authorization') ?? '';
    expect(authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[^,]*host[^,]*, Signature=[0-9a-f]{64}$/,
    );
    expect(seen[0]?.get('x-amz-date')).toMatch(/^\d{8}T\d{6}Z$/);
    expect(authorization).not.toContain('not-a-real-secret');
  });

  it('sends nothing signed to http://localhost without credentials', async () => {
    const seen: Headers[] = [];
    const sluice = new SluiceClient({
      endpoint: api.url,
      fetch: async (input, init) => {
        seen.push(new Headers(init?.headers));
        return fetch(input, init);
      },
    });

    await sluice.available({ entity: entity(), resource: 'm', limits: [tpm(10)] });

    expect(seen[0]?.get('authorization')).toBeNull();
  });
});

describe('denials over HTTP', () => {
  it('answers 429 problem+json with Retry-After, RateLimit and x-ratelimit headers', async () => {
    const e = entity();
    const body = { entity: e, resource: 'gpt-4o', usage: { tokens: 6_000 }, limits: [tpm(10_000)] };
    await post(`${api.url}/v1/acquire`, body);

    const denied = await post(`${api.url}/v1/acquire`, body);

    expect(denied.status).toBe(429);
    expect(denied.headers.get('content-type')).toBe('application/problem+json');
    expect(denied.body).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(denied.body.violations).toEqual([
      expect.objectContaining({
        scope: 'entity',
        name: 'tpm',
        limit: 10_000,
        remaining: 4_000,
        requested: 6_000,
      }),
    ]);
    const retryAfterMs = denied.body.retry_after_ms as number;
    expect(retryAfterMs).toBeGreaterThan(11_000);
    expect(denied.headers.get('retry-after')).toBe(String(Math.ceil(retryAfterMs / 1_000)));
    expect(denied.headers.get('ratelimit-policy')).toBe('"tpm";q=10000;w=2592000');
    expect(denied.headers.get('ratelimit')).toMatch(/^"tpm";r=4000;t=\d+$/);
    expect(denied.headers.get('x-ratelimit-limit-tokens')).toBe('10000');
    expect(denied.headers.get('x-ratelimit-remaining-tokens')).toBe('4000');
    expect(denied.headers.get('x-ratelimit-reset-tokens')).toMatch(/^\d+m\d+s$|^\d+h\d+m\d+s$/);
  });

  it('frames answers with their length, as API Gateway does (a 204 with none), never chunked', async () => {
    const body = {
      entity: entity(),
      resource: 'gpt-4o',
      usage: { tokens: 6_000 },
      limits: [tpm(10_000)],
    };
    const plan = { limits: [{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' }] };
    expect((await request('PUT', `${api.url}/v1/admin/plans/framed`, plan)).status).toBe(201);
    const answers = [
      await request('POST', `${api.url}/v1/acquire`, body),
      await request('POST', `${api.url}/v1/acquire`, body),
      await request('GET', `${api.url}/v1/nowhere`),
      await request('DELETE', `${api.url}/v1/admin/plans/framed`),
    ];

    expect(answers.map((a) => a.status)).toEqual([200, 429, 404, 204]);
    for (const { status, headers, body: parsed } of answers.slice(0, 3)) {
      expect(headers.get('transfer-encoding'), `${status}`).toBeNull();
      expect(Number(headers.get('content-length'))).toBe(Buffer.byteLength(JSON.stringify(parsed)));
    }
    expect(answers[3]?.headers.get('content-length')).toBeNull();
    expect(answers[3]?.headers.get('transfer-encoding')).toBeNull();
  });

  it('answers 422 exceeds_capacity for a request no limit can ever hold', async () => {
    const res = await post(`${api.url}/v1/acquire`, {
      entity: entity(),
      resource: 'gpt-4o',
      usage: { tokens: 20_001 },
      limits: [{ ...tpm(10_000), burst: 20_000 }],
    });

    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'exceeds_capacity', retry_after_ms: null });
  });
});

describe('leases over HTTP', () => {
  it('applies an adjust sent five times at once exactly once', async () => {
    const e = entity();
    const acquired = await post(`${api.url}/v1/acquire`, {
      entity: e,
      resource: 'gpt-4o',
      usage: { tokens: 1_000 },
      limits: [tpm(10_000)],
    });
    const leaseId = acquired.body.lease_id as string;

    const answers = await Promise.all(
      Array.from({ length: 5 }, () =>
        post(`${api.url}/v1/adjust`, { lease_id: leaseId, usage: { tokens: 3_000 } }),
      ),
    );

    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const after = await post(`${api.url}/v1/available`, {
      entity: e,
      resource: 'gpt-4o',
      limits: [tpm(10_000)],
    });
    expect((after.body.limits as { remaining: number }[])[0]?.remaining).toBe(7_000);
  });

  it('refuses an unknown lease with 404 and a settled one with 409', async () => {
    const acquired = await post(`${api.url}/v1/acquire`, {
      entity: entity(),
      resource: 'gpt-4o',
      usage: { tokens: 10 },
      limits: [tpm(10_000)],
    });
    const leaseId = acquired.body.lease_id as string;
    await post(`${api.url}/v1/release`, { lease_id: leaseId });

    const unknown = await post(`${api.url}/v1/adjust`, { lease_id: 'x.y', usage: { tokens: 1 } });
    const again = await post(`${api.url}/v1/release`, { lease_id: leaseId });
    const different = await post(`${api.url}/v1/release`, {
      lease_id: leaseId,
      usage: { tokens: 5 },
    });

    expect(unknown).toMatchObject({ status: 404, body: { code: 'lease_not_found' } });
    expect(again.status).toBe(200);
    expect(different).toMatchObject({ status: 409, body: { code: 'lease_settled' } });
  });
});

describe('malformed requests', () => {
  const valid = {
    entity: 'fuzz-key',
    resource: 'gpt-4o',
    usage: { input_tokens: 10, output_tokens: 5 },
    limits: [tpm(1_000), { name: 'daily', metric: 'cost_micro_usd', limit: 5_000, window: 'day' }],
    max_wait_ms: 0,
    priority: 50,
  };
  // Values invalid wherever they land: no identifier, no usage or limits value, no number field
  // accepts any of them.
  const bad = fc.oneof(
    fc.constantFrom(null, -1, 1.5, 2 ** 53, true, '', 'a'.repeat(200), 'bad key', '#', [1], {
      x: -1,
    }),
    fc.string().map((s) => ` ${s}`),
    fc.integer({ max: -1 }),
    fc.double({ noInteger: true }),
  );
  const path = fc.constantFrom(
    ['entity'],
    ['resource'],
    ['usage'],
    ['usage', 'input_tokens'],
    ['usage', 'Bad Metric'],
    ['limits'],
    ['limits', 0],
    ['limits', 0, 'limit'],
    ['limits', 0, 'per'],
    ['limits', 0, 'burst'],
    ['limits', 1, 'window'],
    ['limits', 1, 'timezone'],
    ['max_wait_ms'],
    ['priority'],
    ['unexpected'],
  );
  type Mutation =
    | { kind: 'set'; path: readonly (string | number)[]; value: unknown }
    | { kind: 'drop'; field: string }
    | { kind: 'raw'; text: string };
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), path, value: bad }),
    fc.record({
      kind: fc.constant('drop' as const),
      field: fc.constantFrom('entity', 'resource', 'usage'),
    }),
    fc.record({ kind: fc.constant('raw' as const), text: fc.string() }),
  );

  function apply(m: Mutation): string {
    if (m.kind === 'raw') return `{${m.text}`; // never valid JSON
    const body = structuredClone(valid) as Record<string, unknown>;
    if (m.kind === 'drop') {
      delete body[m.field];
      return JSON.stringify(body);
    }
    let target = body as Record<string | number, unknown>;
    for (const key of m.path.slice(0, -1)) target = target[key] as Record<string | number, unknown>;
    target[m.path.at(-1) as string | number] = m.value;
    return JSON.stringify(body);
  }

  it('answers 1,000 generated malformed bodies with a 4xx, never a 5xx, and writes nothing', async () => {
    await withNewTable('fuzz', async (fuzzApi, table) => {
      await post(`${fuzzApi.url}/v1/health`, {}); // nothing
      const before = await itemCount(table);
      const samples = fc.sample(mutation, { numRuns: 1_000, seed: 7 });
      const statuses = new Map<number, number>();
      for (let i = 0; i < samples.length; i += 25) {
        const batch = samples.slice(i, i + 25);
        const results = await Promise.all(
          batch.map(async (m) => {
            const body = apply(m);
            const res = await post(`${fuzzApi.url}/v1/acquire`, body);
            if (res.status >= 500 || res.status < 400) throw new Error(`${res.status} for ${body}`);
            return res.status;
          }),
        );
        for (const s of results) statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }

      expect([...statuses.keys()].every((s) => s === 400 || s === 413)).toBe(true);
      expect(await itemCount(table)).toBe(before);
    });
  });

  it('writes nothing on a new table for requests refused once the configuration is read', async () => {
    await withNewTable('refused', async (fresh, table) => {
      const stored = { name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute' };
      const admin = (path: string, body: unknown) =>
        request('PUT', `${fresh.url}/v1/admin/${path}`, body);
      expect((await admin('entities/stored-key', { limits: [stored] })).status).toBe(201);
      await admin('settings', { unknown_entities: 'refuse' });
      const before = await itemCount(table);

      // An inline limit redefining a stored one, an unknown entity, a too-large request: each
      // is refused after the policy is resolved, before anything (the signing key included)
      // is written.
      const redefined = await post(`${fresh.url}/v1/acquire`, {
        entity: 'stored-key',
        resource: 'gpt-4o',
        usage: { input_tokens: 1 },
        limits: [{ ...stored, limit: 2_000 }],
      });
      const unknown = await post(`${fresh.url}/v1/acquire`, {
        entity: 'nobody',
        resource: 'gpt-4o',
        usage: { input_tokens: 1 },
      });
      const tooLarge = await post(`${fresh.url}/v1/acquire`, {
        entity: 'stored-key',
        resource: 'gpt-4o',
        usage: { input_tokens: 1_001 },
      });

      expect(redefined).toMatchObject({ status: 400, body: { field: 'limits[0].name' } });
      expect(unknown.status).toBe(403);
      expect(tooLarge).toMatchObject({ status: 422, body: { code: 'exceeds_capacity' } });
      expect(await itemCount(table)).toBe(before);
    });
  });

  it('writes nothing on a new table for a lease another deployment signed', async () => {
    const acquired = await post(`${api.url}/v1/acquire`, {
      entity: entity(),
      resource: 'gpt-4o',
      usage: { input_tokens: 10 },
      limits: [tpm(1_000)],
    });
    expect(acquired.status).toBe(200);
    await withNewTable('foreign', async (fresh, table) => {
      const before = await itemCount(table);
      const settle = { lease_id: acquired.body.lease_id, usage: { input_tokens: 1 } };

      const adjusted = await post(`${fresh.url}/v1/adjust`, settle);
      const released = await post(`${fresh.url}/v1/release`, settle);

      expect(adjusted).toMatchObject({ status: 404, body: { code: 'lease_not_found' } });
      expect(released).toMatchObject({ status: 404, body: { code: 'lease_not_found' } });
      expect(await itemCount(table)).toBe(before); // not even a signing key of its own
    });
  });

  it('names the body when it is not an object at all', async () => {
    const res = await post(`${api.url}/v1/acquire`, [valid]);

    expect(res).toMatchObject({ status: 400, body: { code: 'invalid_request', field: 'body' } });
  });

  it('names usage when it names more than 32 metrics, on acquire and on adjust', async () => {
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`m${i}`, 1]));
    const acquired = await post(`${api.url}/v1/acquire`, { ...valid, usage: many });
    const lease = await post(`${api.url}/v1/acquire`, {
      entity: entity(),
      resource: 'gpt-4o',
      usage: { tokens: 1 },
      limits: [tpm(1_000)],
    });
    const adjusted = await post(`${api.url}/v1/adjust`, {
      lease_id: lease.body.lease_id,
      usage: many,
    });

    for (const res of [acquired, adjusted])
      expect(res).toMatchObject({ status: 400, body: { code: 'invalid_request', field: 'usage' } });
  });

  it('names usage when a lease would carry more than 40 metrics in all, and the lease still settles', async () => {
    const metrics = (prefix: string, n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, 1]));
    const lease = await post(`${api.url}/v1/acquire`, {
      entity: entity(),
      resource: 'gpt-4o',
      usage: metrics('a', 30),
      limits: [tpm(1_000)],
    });
    const grown = await post(`${api.url}/v1/adjust`, {
      lease_id: lease.body.lease_id,
      usage: metrics('b', 20), // 30 + 20 + requests: past 40
    });
    const released = await post(`${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage: { a0: 2 },
    });

    expect(lease.status).toBe(200);
    expect(grown).toMatchObject({ status: 400, body: { code: 'invalid_request', field: 'usage' } });
    expect(released).toMatchObject({ status: 200, body: { settled: true } });
  });

  it('refuses a non-JSON content type with 415 and an oversized body with 413', async () => {
    const wrongType = await post(`${api.url}/v1/acquire`, JSON.stringify(valid), 'text/plain');
    const tooBig = await post(`${api.url}/v1/acquire`, { ...valid, entity: 'a'.repeat(70_000) });

    expect(wrongType).toMatchObject({ status: 415, body: { code: 'unsupported_media_type' } });
    expect(tooBig).toMatchObject({ status: 413, body: { code: 'payload_too_large' } });
  });
});

describe('when Sluice cannot be reached', () => {
  const stopped = 'http://127.0.0.1:9'; // discard port: nothing listens

  it('lets calls through with fail-open, flagged as degraded', async () => {
    const sluice = new SluiceClient({ endpoint: stopped, timeoutMs: 500, onUnavailable: 'allow' });

    const result = await sluice.acquire({ entity: 'k', resource: 'm', usage: {} });
    const settled = result.allowed
      ? await sluice.release(result.leaseId, { tokens: 5 })
      : undefined;

    expect(result).toMatchObject({ allowed: true, degraded: true });
    expect(settled).toMatchObject({ degraded: true });
  });

  it('refuses calls with fail-closed, flagged as degraded', async () => {
    const sluice = new SluiceClient({ endpoint: stopped, timeoutMs: 500, onUnavailable: 'deny' });

    const result = await sluice.acquire({ entity: 'k', resource: 'm', usage: {} });

    expect(result).toMatchObject({ allowed: false, code: 'unavailable', degraded: true });
  });
});
