/**
 * `sluice console` (the CLI from its sources, its own process) against the local server behind a
 * front end that checks SigV4 as API Gateway does (test/support/signing-front-end.ts), with
 * static credentials from the environment. In Chromium: the page loads through the proxy, its
 * calls arrive signed and are answered, a write the "role" may not make and a call tampered with
 * on the way get the front end's 403 and the page says "Your role may not do this.", a page of
 * another origin cannot drive the proxy, and no credential reaches the browser. Then the proxy in
 * this process: what it forwards and what it refuses before forwarding.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsoleProxy } from '../../packages/cli/src/console.js';
import { fileApi, request } from '../support/api.js';
import { launch, settled, type Watch, watch } from '../support/browser.js';
import { type FrontEnd, startSigningFrontEnd } from '../support/signing-front-end.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REGION = 'eu-west-1';
const CREDENTIALS = {
  accessKeyId: 'AKIACONSOLEPROXYTEST',
  secretAccessKey: 'console-proxy-secret-not-a-real-one-0123456',
  sessionToken: 'console-proxy-session-token-not-a-real-one-abcdef',
};
const SECRETS = Object.values(CREDENTIALS);

const api = fileApi('console-proxy');
let front: FrontEnd;
let cli: ChildProcess;
let cliOutput = '';
let proxyUrl: string;
let browser: Browser;
let page: Page;
let watched: Watch;
/** Every answer the browser received: its URL, headers and body. */
const seenByBrowser: string[] = [];

/** `sluice console` from the sources, as its own process, with the credentials in its env. */
async function startCli(endpoint: string): Promise<string> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_SESSION_TOKEN: CREDENTIALS.sessionToken,
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  delete env.AWS_PROFILE;
  const argv = ['console', '--endpoint', endpoint, '--region', REGION, '--port', '0'];
  cli = spawn(
    process.execPath,
    [
      '--conditions=sluice-source',
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { main } from '@sluice/cli'; process.exitCode = await main(${JSON.stringify(argv)});`,
    ],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no console: ${cliOutput}`)), 30_000);
    const onData = (chunk: Buffer) => {
      cliOutput += chunk.toString();
      const url = /: (http:\/\/127\.0\.0\.1:\d+)\/console\n/.exec(cliOutput)?.[1];
      if (url) {
        clearTimeout(timer);
        resolve(url);
      }
    };
    cli.stdout?.on('data', onData);
    cli.stderr?.on('data', onData);
    cli.once('exit', (code) => reject(new Error(`sluice console exited ${code}: ${cliOutput}`)));
  });
}

/** Stops the CLI as Ctrl-C would and says how it exited. */
async function stopCli(): Promise<number | null> {
  if (cli.exitCode !== null) return cli.exitCode;
  const exited = new Promise<number | null>((resolve) => cli.once('exit', resolve));
  cli.kill('SIGINT');
  const timer = setTimeout(() => cli.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

beforeAll(async () => {
  front = await startSigningFrontEnd({
    upstream: api.url,
    region: REGION,
    credentials: CREDENTIALS,
    // The role may read and write resources, not plans.
    denies: (method, path) => method !== 'GET' && path.startsWith('/v1/admin/plans/'),
    // Something on the way changes the audit's page size: the signature no longer holds.
    meddle: (path) => path.replace(/^(\/v1\/admin\/audit\?.*limit=)\d+/, '$1999'),
  });
  proxyUrl = await startCli(front.url);
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  watched = watch(page);
  page.on('response', async (res) => {
    const body = await res.text().catch(() => '');
    seenByBrowser.push(`${res.url()}\n${JSON.stringify(res.headers())}\n${body}`);
  });
});

afterAll(async () => {
  await browser?.close();
  if (cli) await stopCli();
  await front?.close();
});

const open = async (hash: string) => {
  await page.goto(`${proxyUrl}/console${hash}`);
  await settled(page);
};

/** What the front end received for paths starting with `prefix`, since `from`. */
const arrived = (prefix: string, from = 0) =>
  front.received.slice(from).filter((r) => r.path.startsWith(prefix));

/** Submits the form on the page and returns what it says of the answer. */
const save = async () => {
  const answered = page.waitForResponse((res) => res.request().method() === 'PUT');
  await page.click('form.editor button[type="submit"]');
  await answered;
  await page.waitForSelector('[data-testid="outcome"]');
  return page.locator('[data-testid="outcome"]');
};

describe('sluice console', () => {
  it('serves the console, and its calls arrive signed and are answered', async () => {
    const made = await request('PUT', `${api.url}/v1/admin/resources/proxy-model`, {
      price: { input: '1', output: '2' },
    });
    expect(made.status).toBe(201);
    const from = front.received.length;

    await open('#/config');

    expect(await page.locator('nav a').allInnerTexts()).toContain('Configuration');
    expect(await page.textContent('main')).toContain('proxy-model');
    const calls = arrived('/v1/', from);
    expect(calls.map((c) => c.path)).toContain('/v1/admin/resources?limit=200');
    for (const call of calls) {
      expect(call.refused, call.path).toBeUndefined();
      expect(call.headers['x-amz-security-token']).toBe(CREDENTIALS.sessionToken);
      expect(String(call.headers.authorization)).toContain(
        `Credential=${CREDENTIALS.accessKeyId}/`,
      );
      expect(String(call.headers.authorization)).toContain(`/${REGION}/execute-api/aws4_request`);
      // Nothing of the browser's own reaches the API.
      expect(call.headers.cookie).toBeUndefined();
      expect(call.headers['user-agent']).not.toContain('Chrome');
    }
    expect(watched.problems).toEqual([]);
  });

  it('writes what the role may write through the forms, signed body and all', async () => {
    const from = front.received.length;
    await open('#/config/resource');
    await page.fill('[data-field="resource"]', 'proxy-made');
    await page.fill('[data-field="price.input"]', '3');
    await page.fill('[data-field="price.output"]', '4');

    expect(await (await save()).textContent()).toContain('Saved resource proxy-made');
    const [put] = arrived('/v1/admin/resources/proxy-made', from);
    expect(put).toMatchObject({ method: 'PUT', status: 201 });
    expect(JSON.parse(put?.body ?? '')).toMatchObject({ price: { input: '3', output: '4' } });
    expect((await request('GET', `${api.url}/v1/admin/resources/proxy-made`)).status).toBe(200);
  });

  it('shows a 403 of IAM as "Your role may not do this.", and one of a bad signature as such', async () => {
    const from = front.received.length;
    await open('#/config/plan');
    await page.fill('[data-field="plan"]', 'proxy-plan');
    const outcome = await save();

    expect(await outcome.textContent()).toBe('Not saved. Your role may not do this.');
    expect(await outcome.getAttribute('class')).toContain('forbidden');
    expect(arrived('/v1/admin/plans/proxy-plan', from)).toMatchObject([
      { method: 'PUT', status: 403, refused: expect.stringContaining('not authorized') },
    ]);

    // A refused signature (as expired or wrong credentials are) is not the role's doing.
    await open('#/audit');
    expect(await page.locator('main .note.forbidden').count()).toBe(0);
    const error = await page.locator('main .note.error').first().textContent();
    expect(error).toContain('AWS refused the console’s credentials');
    expect(error).toContain('signature we calculated does not match');
    expect(arrived('/v1/admin/audit', from)).toMatchObject([
      { status: 403, refused: expect.stringContaining('signature') },
    ]);
    // The other views keep working.
    await open('#/config');
    expect(await page.textContent('main')).toContain('proxy-made');
    expect(await page.locator('main .note.forbidden').count()).toBe(0);
  });

  it('has a front end that refuses requests unsigned or changed after signing', async () => {
    const [signed] = arrived('/v1/admin/resources?limit=200');
    if (!signed) throw new Error('no signed request seen');
    const replay = (path: string, headers: Record<string, string>, body?: string) =>
      fetch(`${front.url}${path}`, {
        method: body ? 'PUT' : 'GET',
        headers: body ? { ...headers, 'content-type': 'application/json' } : headers,
        ...(body ? { body } : {}),
      });
    /** The headers a request was signed with, as received (the signature among them). */
    const signedHeaders = (one: typeof signed) => {
      const names = /SignedHeaders=([^,]+)/.exec(String(one.headers.authorization))?.[1] ?? '';
      return Object.fromEntries(
        [...names.split(';'), 'authorization']
          .filter((n) => n !== 'host')
          .map((n) => [n, String(one.headers[n])]),
      );
    };
    const sent = signedHeaders(signed);

    expect((await replay(signed.path, sent)).status).toBe(200);
    expect((await replay('/v1/admin/resources?limit=1', sent)).status).toBe(403);
    expect((await replay('/v1/admin/plans?limit=200', sent)).status).toBe(403);
    expect((await replay(signed.path, {})).status).toBe(403);
    const [write] = arrived('/v1/admin/resources/proxy-made');
    if (!write) throw new Error('no signed write seen');
    const withBody = signedHeaders(write);
    const again = await replay('/v1/admin/resources/proxy-made', withBody, write.body);
    const tampered = await replay('/v1/admin/resources/proxy-made', withBody, '{"price":{}}');
    expect(again.status).toBe(200);
    expect(tampered.status).toBe(403);
  });

  it('refuses calls from another origin or host, and one from a page of another site', async () => {
    const from = front.received.length;
    const put = (headers: Record<string, string>) =>
      fetch(`${proxyUrl}/v1/admin/resources/cross-made`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ price: { input: '1', output: '1' } }),
      });

    expect((await put({ origin: 'http://evil.example' })).status).toBe(403);
    expect((await put({})).status).toBe(403); // a write without the page's Origin
    expect((await put({ origin: proxyUrl, 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${proxyUrl}/v1/admin/resources?limit=1`, {
        headers: { host: 'evil.example' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(rebound).toBe(403);

    // A page on another origin (another port of this machine) posting to the proxy.
    const other: Server = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>another site</title><p>another site</p>');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const stranger = await browser.newPage();
      await stranger.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`);
      await stranger.evaluate(async (target) => {
        // A form's kind of request (sent as is), and a JSON write (asked first with OPTIONS).
        await fetch(target, { method: 'POST', mode: 'no-cors', body: '{}' }).catch(() => {});
        const json = { 'content-type': 'application/json' };
        await fetch(target, { method: 'PUT', headers: json, body: '{}' }).catch(() => {});
      }, `${proxyUrl}/v1/admin/resources/cross-page`);
      await stranger.close();
    } finally {
      other.close();
    }

    expect(arrived('/v1/', from)).toEqual([]);
    expect((await request('GET', `${api.url}/v1/admin/resources/cross-made`)).status).toBe(404);
    // The page's calls reached the proxy, and went no further.
    await expect.poll(() => cliOutput).toContain('refused POST /v1/admin/resources/cross-page');
    expect(cliOutput).toContain('refused OPTIONS /v1/admin/resources/cross-page');
    expect(cliOutput).toContain('refused PUT /v1/admin/resources/cross-made');
  });

  it('never lets a credential reach the browser, and stops on Ctrl-C', async () => {
    await open('#/');
    seenByBrowser.push(await page.content());

    expect(seenByBrowser.length).toBeGreaterThan(10);
    for (const secret of SECRETS)
      expect(seenByBrowser.filter((text) => text.includes(secret))).toEqual([]);
    // Nor the secret key to the API (the signature stands for it).
    const sentToApi = front.received.map((r) => JSON.stringify(r.headers) + r.body).join('\n');
    expect(sentToApi).not.toContain(CREDENTIALS.secretAccessKey);
    expect(await stopCli()).toBe(0);
  });
});

describe('the console, for a role with the client grant only', () => {
  it('shows an entity’s headroom and usage, and says its configuration needs the admin grant', async () => {
    // Calls made directly to the API: a stored plan with a daily limit, and one settled call.
    await request('PUT', `${api.url}/v1/admin/plans/client-only-plan`, {
      limits: [{ name: 'daily', metric: 'tokens', limit: 5_000, window: 'day' }],
    });
    await request('PUT', `${api.url}/v1/admin/entities/client-only`, {
      plan: 'client-only-plan',
    });
    const lease = await request('POST', `${api.url}/v1/acquire`, {
      entity: 'client-only',
      resource: 'gpt-client',
      usage: { input_tokens: 100, output_tokens: 20 },
    });
    expect(lease.status).toBe(200);
    const release = await request('POST', `${api.url}/v1/release`, {
      lease_id: lease.body.lease_id,
      usage: { input_tokens: 100, output_tokens: 20 },
    });
    expect(release.status).toBe(200);
    const clientOnly = await startSigningFrontEnd({
      upstream: api.url,
      region: REGION,
      credentials: CREDENTIALS,
      denies: (_method, path) => path.startsWith('/v1/admin/'),
    });
    const proxy = await startConsoleProxy({
      endpoint: clientOnly.url,
      region: REGION,
      credentials: CREDENTIALS,
      port: 0,
    });
    try {
      const tab = await browser.newPage();
      const problems = watch(tab);
      await tab.goto(`${proxy.url}/console#/entity/client-only`);
      await settled(tab);
      expect(await tab.textContent('main')).toContain('Name a resource to see its headroom');
      await tab.fill('#resource', 'gpt-client');
      await tab.press('#resource', 'Enter');
      await settled(tab);
      expect(await tab.locator('[data-limit="entity.daily"]').count()).toBe(1);
      expect(await tab.locator('[data-limit="entity.daily"]').textContent()).toContain(
        '4,880 tokens left of 5,000 tokens',
      );
      expect(await tab.textContent('main')).toContain('needs the admin grant');
      expect(await tab.locator('main .note.error').count()).toBe(0);
      expect(clientOnly.received.some((r) => r.status === 403)).toBe(true);
      expect(problems.problems).toEqual([]);
    } finally {
      await proxy.close();
      await clientOnly.close();
    }
  });
});

describe("the console's proxy, in process", () => {
  it('forwards only /v1/ calls with a JSON body, and neither cookies nor hop-by-hop headers', async () => {
    const upstream = await startSigningFrontEnd({
      upstream: api.url,
      region: REGION,
      credentials: CREDENTIALS,
    });
    const proxy = await startConsoleProxy({
      endpoint: upstream.url,
      region: REGION,
      credentials: CREDENTIALS,
      port: 0,
    });
    try {
      const send = (path: string, init: RequestInit = {}) =>
        fetch(`${proxy.url}${path}`, {
          ...init,
          redirect: 'manual',
          headers: { origin: proxy.url, ...(init.headers as Record<string, string>) },
        });
      const answered = await send('/v1/admin/resources?limit=1', {
        headers: { cookie: 'session=browser', 'x-forwarded-for': '203.0.113.9', te: 'trailers' },
      });
      const [forwarded] = upstream.received;

      expect(answered.status).toBe(200);
      expect(answered.headers.get('cache-control')).toBe('no-store');
      // The signature's headers, and what Node's fetch sends of its own: nothing of the caller's.
      const names = Object.keys(forwarded?.headers ?? {});
      const fetchOwn =
        /^(host|connection|accept|accept-encoding|accept-language|sec-fetch-mode|user-agent)$/;
      expect(names.filter((n) => !fetchOwn.test(n)).sort()).toEqual([
        'authorization',
        'x-amz-content-sha256',
        'x-amz-date',
        'x-amz-security-token',
      ]);
      expect(forwarded?.headers.origin).toBeUndefined();
      // Its own refusals say so: the page does not take them for IAM's.
      const stranger = await send('/v1/admin/plans', {
        headers: { origin: 'http://evil.example' },
      });
      expect(stranger.status).toBe(403);
      expect(await stranger.json()).toMatchObject({ code: 'console_proxy' });
      expect((await send('/')).headers.get('location')).toBe('/console');
      expect((await send('/elsewhere')).status).toBe(404);
      expect((await send('/v1/admin/resources/x', { method: 'OPTIONS' })).status).toBe(405);
      const plain = { 'content-type': 'text/plain' };
      expect(
        (await send('/v1/available', { method: 'POST', body: '{}', headers: plain })).status,
      ).toBe(415);
      const big = JSON.stringify({ pad: 'x'.repeat(1_100_000) });
      const json = { 'content-type': 'application/json' };
      expect(
        (await send('/v1/available', { method: 'POST', body: big, headers: json })).status,
      ).toBe(413);
      expect(upstream.received).toHaveLength(1);

      // A write's conditions on the version it read go through; the version comes back.
      const create = () =>
        send('/v1/admin/resources/proxied', {
          method: 'PUT',
          body: '{}',
          headers: { ...json, 'if-none-match': '*' },
        });
      const created = await create();
      expect(created.status).toBe(201);
      expect(created.headers.get('etag')).toMatch(/^"1-[\w-]+"$/);
      expect(upstream.received.at(-1)?.headers['if-none-match']).toBe('*');
      expect((await create()).status).toBe(412);
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});
