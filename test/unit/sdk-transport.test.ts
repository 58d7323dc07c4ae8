/**
 * The SDK's transport and lease streams, with a fetch that records what it is sent and answers
 * as told, and fake timers: no network, no waiting, no dependence on the machine's speed.
 */
import { SluiceAdmin, SluiceClient, SluiceRequestError } from '@sluice/client';
import { afterEach, describe, expect, it, vi } from 'vitest';

const ENDPOINT = 'http://127.0.0.1:3000';

/** A fetch answering each call with the next of `answers` (a status and a body text). */
function fakeFetch(answers: readonly (readonly [number, string] | Error)[]) {
  const sent: { method: string; path: string; body: unknown }[] = [];
  const queue = [...answers];
  const fetch = async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    sent.push({
      method: init?.method ?? 'GET',
      path: url.pathname,
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
    });
    const next = queue.shift() ?? [200, '{}'];
    if (next instanceof Error) throw next;
    const [status, text] = next;
    return new Response(status === 204 ? null : text, { status });
  };
  return { sent, fetch: fetch as typeof globalThis.fetch };
}

const noSleep = async () => {};

describe('the SDK transport', () => {
  it('retries a 5xx and a page that is not JSON, then answers', async () => {
    const { sent, fetch } = fakeFetch([
      [502, '<html>Bad Gateway</html>'],
      [200, '<html>a proxy page</html>'],
      [200, '{"limits":[],"retry_after_ms":0}'],
    ]);
    const client = new SluiceClient({ endpoint: ENDPOINT, fetch, retries: 2, sleep: noSleep });

    const result = await client.available({ entity: 'k', resource: 'm' });

    expect(result).toEqual({ limits: [], retryAfterMs: 0, degraded: false });
    expect(sent.map((s) => s.path)).toEqual(['/v1/available', '/v1/available', '/v1/available']);
  });

  it('fails open, saying degraded, when every attempt fails', async () => {
    const { fetch } = fakeFetch([new TypeError('fetch failed'), [503, 'no'], [500, '']]);
    const client = new SluiceClient({ endpoint: ENDPOINT, fetch, retries: 2, sleep: noSleep });

    const result = await client.acquire({ entity: 'k', resource: 'm', usage: { tokens: 1 } });

    expect(result).toMatchObject({ allowed: true, degraded: true });
  });

  it('throws a refusal with its code and field, and never retries one', async () => {
    const { sent, fetch } = fakeFetch([
      [400, '{"code":"invalid_request","detail":"usage.tokens: too large","field":"usage.tokens"}'],
    ]);
    const client = new SluiceClient({ endpoint: ENDPOINT, fetch, sleep: noSleep });

    const refused = client.adjust('lease', { tokens: 1 });

    await expect(refused).rejects.toBeInstanceOf(SluiceRequestError);
    await expect(refused).rejects.toMatchObject({ code: 'invalid_request', field: 'usage.tokens' });
    expect(sent).toHaveLength(1);
  });

  it('gives the admin a readable error for a body that is not JSON', async () => {
    const { fetch } = fakeFetch([[403, '<html>Forbidden by a proxy</html>']]);
    const admin = new SluiceAdmin({ endpoint: ENDPOINT, fetch });

    await expect(admin.get('plan', 'free')).rejects.toMatchObject({
      code: 'forbidden',
      status: 403,
      message: '<html>Forbidden by a proxy</html>',
    });
  });

  it('sends admin paths with the collection of each kind, names encoded', async () => {
    const { sent, fetch } = fakeFetch([
      [200, '{"kind":"entity","name":"a b","config":{},"version":1}'],
      [204, ''],
    ]);
    const admin = new SluiceAdmin({ endpoint: ENDPOINT, fetch });

    await admin.put('entity', 'a b', { plan: 'free' });
    await admin.delete('resource', 'gpt-4o');

    expect(sent.map((s) => `${s.method} ${s.path}`)).toEqual([
      'PUT /v1/admin/entities/a%20b',
      'DELETE /v1/admin/resources/gpt-4o',
    ]);
  });
});

describe('a lease stream', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('coalesces updates into one adjust per interval, in order, then settles with the totals', async () => {
    vi.useFakeTimers();
    const settle = (tokens: number) =>
      `{"lease_id":"L","settled":false,"usage":{"tokens":${tokens}},"limits":[]}`;
    const { sent, fetch } = fakeFetch([
      [200, settle(700)],
      [200, settle(1400)],
      [200, settle(1500)],
    ]);
    const client = new SluiceClient({ endpoint: ENDPOINT, fetch, sleep: noSleep });
    const stream = client.stream('L', { minIntervalMs: 250 });

    stream.update({ tokens: 200 });
    stream.update({ tokens: 700 }); // within the interval: replaces 200
    await vi.advanceTimersByTimeAsync(250);
    stream.update({ tokens: 1_400 });
    await vi.advanceTimersByTimeAsync(100); // not yet
    const before = sent.length;
    await vi.advanceTimersByTimeAsync(150);
    const result = await stream.end({ tokens: 1_500 });

    expect(before).toBe(1);
    expect(sent.map((s) => [s.path, s.body])).toEqual([
      ['/v1/adjust', { lease_id: 'L', usage: { tokens: 700 } }],
      ['/v1/adjust', { lease_id: 'L', usage: { tokens: 1_400 } }],
      ['/v1/release', { lease_id: 'L', usage: { tokens: 1_500 } }],
    ]);
    expect(result.usage).toEqual({ tokens: 1_500 });
  });

  it('gives everything back when aborted before any usage', async () => {
    vi.useFakeTimers();
    const { sent, fetch } = fakeFetch([[200, '{"lease_id":"L","settled":true,"usage":{}}']]);
    const client = new SluiceClient({ endpoint: ENDPOINT, fetch, sleep: noSleep });

    await client.stream('L').abort();

    expect(sent).toEqual([{ method: 'POST', path: '/v1/release', body: { lease_id: 'L' } }]);
  });
});
