/**
 * The example file (examples/sluice.yaml) as written, applied with the CLI and exercised over HTTP: models per plan, context limits, shared and per-model limits, a daily USD budget in New York time, disabled and unregistered callers.
 */
import { fileURLToPath } from 'node:url';
import { main } from '@sluice/cli';
import { beforeAll, describe, expect, it } from 'vitest';
import { acquire, limitOf } from '../support/admin.js';
import { fileApi, request } from '../support/api.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/sluice.yaml', import.meta.url));
// 30-day periods: refill during a test is far below one unit, so counts can be asserted exactly.

async function cli(
  url: string,
  ...argv: string[]
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    [...argv, '--endpoint', url],
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/**
 * Milliseconds until the next midnight in New York, computed apart from Sluice's calendar, from
 * the time the server's answer states (its Date header, to the second): the test's own clock is
 * never compared with the server's.
 */
function untilNewYorkMidnight(answer: { headers: Headers }): number {
  const now = Date.parse(answer.headers.get('date') ?? '');
  if (Number.isNaN(now)) throw new Error('the answer has no Date header');
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/New_York',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
    hourCycle: 'h23',
  }).formatToParts(new Date(now));
  const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const elapsed = ((part('hour') * 60 + part('minute')) * 60 + part('second')) * 1000;
  return 86_400_000 - elapsed - (now % 1000);
}

describe('the example file (examples/sluice.yaml)', () => {
  // Its own table: the example's `default` plan would apply to every other test's callers.
  const api = fileApi('cfg-example');
  beforeAll(async () => {
    const applied = await cli(api.url, 'apply', '-f', EXAMPLE);
    expect(applied.code, applied.err).toBe(0);
  });

  it('allows each plan its models only', async () => {
    const free = { entity: 'hobbyist-key', usage: { input_tokens: 100, output_tokens: 10 } };
    const denied = await acquire(api.url, { ...free, resource: 'gpt-4o' });
    const haiku = await acquire(api.url, { ...free, resource: 'claude-haiku-4-5' });
    const pro = await acquire(api.url, {
      entity: 'acme-search-key-1',
      resource: 'gpt-4o',
      usage: { input_tokens: 100 },
    });

    expect(denied).toMatchObject({ status: 403, body: { code: 'resource_not_allowed' } });
    expect(haiku.status).toBe(200);
    expect(pro.status).toBe(200);
  });

  it('refuses an input estimate above the plan’s max_input_tokens', async () => {
    const at = (input_tokens: number) =>
      acquire(api.url, {
        entity: 'hobbyist-key',
        resource: 'gpt-4o-mini',
        usage: { input_tokens },
      });
    expect((await at(8_000)).status).toBe(200);
    expect(await at(8_001)).toMatchObject({ status: 422, body: { code: 'context_too_large' } });
  });

  it('enforces the free plan’s tokens per minute, naming scope and limit', async () => {
    await request('POST', `${api.url}/v1/admin/entities/hobbyist-key/reset`);
    const take = (tokens: number) =>
      acquire(api.url, { entity: 'hobbyist-key', resource: 'gpt-4o-mini', usage: { tokens } });
    const first = await take(15_000);
    const second = await take(6_000);

    expect(first.status).toBe(200);
    expect(limitOf(first.body, 'entity', 'tpm')?.remaining).toBeLessThanOrEqual(5_000);
    expect(second.status).toBe(429);
    expect(second.body.violations).toEqual([
      expect.objectContaining({ scope: 'entity', name: 'tpm', limit: 20_000, requested: 6_000 }),
    ]);
  });

  it('shares plan-wide limits across models and counts per-model limits apart', async () => {
    const key = 'acme-search-key-2';
    const on = (resource: string, tokens: number) =>
      acquire(api.url, { entity: key, resource, usage: { tokens } });
    const mini = await on('gpt-4o-mini', 100_000);
    const big = await on('gpt-4o', 10);

    expect(limitOf(mini.body, 'entity', 'model_tpm')).toBeUndefined();
    expect(limitOf(big.body, 'entity', 'model_tpm')).toMatchObject({ limit: 100_000 });
    expect(limitOf(big.body, 'entity', 'model_tpm')?.remaining).toBeGreaterThanOrEqual(99_990);
    // The shared tpm (burst 300,000) already holds the 100,000 tokens sent to gpt-4o-mini.
    expect(limitOf(big.body, 'entity', 'tpm')?.remaining).toBeLessThan(250_000);
  });

  it('keeps a daily USD budget in New York time, priced from the resource', async () => {
    await request('POST', `${api.url}/v1/admin/entities/hobbyist-key/reset`);
    // gpt-4o-mini: $0.15 in, $0.60 out per million: 1,000 + 1,000 tokens cost 750 micro-USD.
    const first = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1_000, output_tokens: 1_000 },
    });
    const budget = limitOf(first.body, 'entity', 'daily_usd');
    expect(budget?.remaining).toBe(500_000 - 750);
    // reset_ms counts from the server's now; the Date header states that time to the second.
    expect(Math.abs((budget?.reset_ms ?? 0) - untilNewYorkMidnight(first))).toBeLessThan(2_000);

    // The call really wrote 100,000 tokens on Haiku ($5 per million out): $0.50, the whole day.
    const lease = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'claude-haiku-4-5',
      usage: { input_tokens: 10, output_tokens: 10 },
    });
    const settled = await request('POST', `${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage: { input_tokens: 10, output_tokens: 100_000 },
    });
    expect(settled.body.usage).toMatchObject({ cost_micro_usd: 500_010 });

    const refused = await acquire(api.url, {
      entity: 'hobbyist-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const violation = (refused.body.violations as { name: string; retry_after_ms: number }[]).find(
      (v) => v.name === 'daily_usd',
    );
    expect(refused.status).toBe(429);
    expect(Math.abs((violation?.retry_after_ms ?? 0) - untilNewYorkMidnight(refused))).toBeLessThan(
      2_000,
    );
  });

  it('refuses a disabled key, and gives unregistered callers the default plan', async () => {
    const disabled = await acquire(api.url, {
      entity: 'leaked-key',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const stranger = await acquire(api.url, {
      entity: 'nobody-we-know',
      resource: 'gpt-4o-mini',
      usage: { input_tokens: 1 },
    });
    const strangerBig = await acquire(api.url, {
      entity: 'nobody-we-know',
      resource: 'gpt-4o',
      usage: { input_tokens: 1 },
    });

    expect(disabled).toMatchObject({ status: 403, body: { code: 'entity_disabled' } });
    expect(limitOf(stranger.body, 'entity', 'rpm')?.limit).toBe(5);
    expect(strangerBig).toMatchObject({ status: 403, body: { code: 'resource_not_allowed' } });
  });

  it('is unchanged when planned again, and a bad file stores nothing', async () => {
    const again = await cli(api.url, 'plan', '-f', EXAMPLE);
    expect(again.out).toContain('0 to create, 0 to change, 0 to delete');

    const bad = fileURLToPath(new URL('./fixtures/bad-burst.yaml', import.meta.url));
    const refused = await cli(api.url, 'apply', '-f', bad);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('plans.tiny.limits[0].burst');
    expect((await request('GET', `${api.url}/v1/admin/plans/tiny`)).status).toBe(404);
  });
});
