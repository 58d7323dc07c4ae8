/**
 * `@sluice/client/middy` around a real middy handler, against the local API over HTTP: the
 * handler runs only when admitted, the lease settles at what the handler reported (mapped from a
 * provider's usage), a refusal answers 429 with Sluice's headers, a throwing handler gets its
 * reservation back, and an unreachable Sluice fails open or closed as the client says.
 */
import middy from '@middy/core';
import { fromAnthropic, SluiceClient } from '@sluice/client';
import { type SluiceGuarded, sluiceGuard } from '@sluice/client/middy';
import type { Context } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { tpm30Days as tpm } from '../support/limits.js';

const api = fileApi('middy');
let n = 0;

const context = () => ({ awsRequestId: `req-${++n}` }) as unknown as Context;

interface Event {
  key: string;
  fail?: boolean;
  settledElsewhere?: boolean;
}
type Result = { statusCode: number; headers?: Record<string, string>; body: string };

function guarded(client: SluiceClient, limit: number, onSettleError?: (error: unknown) => void) {
  let calls = 0;
  const handler = middy(async (event: Event, ctx: Context): Promise<Result> => {
    calls++;
    if (event.fail) throw new Error('the provider failed');
    // Something else settles the lease first: the middleware's own release gets 409.
    if (event.settledElsewhere)
      await client.release((ctx as unknown as SluiceGuarded).sluice.leaseId);
    // Anthropic counts cache reads outside input_tokens: 300 + 1,200 + 0 = 1,500 input tokens.
    (ctx as unknown as SluiceGuarded).sluice.usage = fromAnthropic({
      input_tokens: 300,
      cache_read_input_tokens: 1_200,
      output_tokens: 250,
    });
    return { statusCode: 200, body: 'ok' };
  }).use(
    sluiceGuard<Event, Result>({
      client,
      request: (event) => ({
        entity: event.key,
        resource: 'claude-sonnet',
        usage: { input_tokens: 1_500, output_tokens: 1_000 },
        limits: [tpm(limit)],
      }),
      ...(onSettleError ? { onSettleError } : {}),
    }),
  );
  return { handler, calls: () => calls };
}

async function remaining(client: SluiceClient, key: string, limit: number): Promise<number> {
  const answer = await client.available({
    entity: key,
    resource: 'claude-sonnet',
    limits: [tpm(limit)],
  });
  return answer.limits[0]?.remaining ?? Number.NaN;
}

describe('sluiceGuard', () => {
  it('runs the handler when admitted and settles at the usage it reported', async () => {
    const client = new SluiceClient({ endpoint: api.url });
    const { handler, calls } = guarded(client, 10_000);
    const key = `mw-${++n}`;

    const result = await handler({ key }, context());

    expect(result).toEqual({ statusCode: 200, body: 'ok' });
    expect(calls()).toBe(1);
    // Estimated 2,500; used 1,500 input (cache reads included) + 250 output.
    expect(await remaining(client, key, 10_000)).toBe(10_000 - 1_750);
  });

  it('answers 429 with Sluice headers and never runs the handler when refused', async () => {
    const client = new SluiceClient({ endpoint: api.url });
    const { handler, calls } = guarded(client, 2_000);
    const key = `mw-${++n}`;

    const result = await handler({ key }, context());

    expect(calls()).toBe(0);
    expect(result.statusCode).toBe(422); // 2,500 estimated can never fit 2,000
    const small = guarded(client, 4_000);
    await small.handler({ key: `${key}-b` }, context()); // 1,750 used
    const refused = await small.handler({ key: `${key}-b` }, context()); // 2,500 more: no room
    expect(small.calls()).toBe(1);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers?.['content-type']).toBe('application/problem+json');
    expect(Number(refused.headers?.['retry-after'])).toBeGreaterThan(0);
    expect(Number(refused.headers?.['retry-after-ms'])).toBeGreaterThan(0);
    expect(refused.headers?.['x-ratelimit-limit-tokens']).toBe('4000');
    expect(JSON.parse(refused.body)).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(await remaining(client, `${key}-b`, 4_000)).toBe(4_000 - 1_750);
  });

  it('gives the whole reservation back when the handler throws', async () => {
    const client = new SluiceClient({ endpoint: api.url });
    const { handler, calls } = guarded(client, 10_000);
    const key = `mw-${++n}`;

    await expect(handler({ key, fail: true }, context())).rejects.toThrow('the provider failed');

    expect(calls()).toBe(1);
    expect(await remaining(client, key, 10_000)).toBe(10_000);
  });

  it("keeps the handler's answer when settling fails, and says so", async () => {
    const client = new SluiceClient({ endpoint: api.url });
    const failures: string[] = [];
    const { handler } = guarded(client, 10_000, (error) =>
      failures.push((error as { code: string }).code),
    );

    expect(await handler({ key: `mw-${++n}`, settledElsewhere: true }, context())).toEqual({
      statusCode: 200,
      body: 'ok',
    });
    expect(failures).toEqual(['lease_settled']);
  });

  it('says so when Sluice cannot be reached to settle, and keeps the answer', async () => {
    // The network to Sluice fails for the release alone (the client answers it as degraded).
    const cut: typeof fetch = async (input, init) => {
      if (String(input instanceof Request ? input.url : input).endsWith('/v1/release'))
        throw new TypeError('fetch failed');
      return fetch(input, init);
    };
    const client = new SluiceClient({ endpoint: api.url, fetch: cut, timeoutMs: 1_000 });
    const failures: string[] = [];
    const { handler } = guarded(client, 10_000, (error) =>
      failures.push((error as { code: string }).code),
    );

    expect(await handler({ key: `mw-${++n}` }, context())).toEqual({ statusCode: 200, body: 'ok' });
    expect(await handler({ key: `mw-${++n}`, fail: true }, context()).catch(String)).toContain(
      'the provider failed',
    );
    expect(failures).toEqual(['unavailable', 'unavailable']);
  });

  it('fails open or closed, as the client is told, when Sluice cannot be reached', async () => {
    const unreachable = 'http://127.0.0.1:9'; // the discard port: nothing listens
    const open = guarded(new SluiceClient({ endpoint: unreachable, timeoutMs: 300 }), 10_000);
    const closed = guarded(
      new SluiceClient({ endpoint: unreachable, timeoutMs: 300, onUnavailable: 'deny' }),
      10_000,
    );

    expect(await open.handler({ key: 'anyone' }, context())).toEqual({
      statusCode: 200,
      body: 'ok',
    });
    expect((await closed.handler({ key: 'anyone' }, context())).statusCode).toBe(503);
    expect(closed.calls()).toBe(0);
  });
});
