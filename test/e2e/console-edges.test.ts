/**
 * The console at its edges, in Chromium: a view driven by its address, two editors of one
 * document, a name that is taken, `npm start` addressed by a name of another site, and `sluice
 * console`'s proxy passing back an answer that is a page (from the endpoint, or something in
 * front of it).
 */
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsoleProxy } from '../../packages/cli/src/console.js';
import { fileApi, request } from '../support/api.js';
import { launch, settled } from '../support/browser.js';

const api = fileApi('console-edges');
let browser: Browser;

beforeAll(async () => {
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

const open = async (page: Page, hash: string) => {
  await page.goto(`${api.url}/console${hash}`);
  await settled(page);
};

describe('the console, driven by its address', () => {
  it('filters the audit by the entity the address names, when the address changes', async () => {
    const page = await browser.newPage();
    await open(page, '#/audit?entity=first-filter');
    expect(await page.inputValue('#audit-entity')).toBe('first-filter');

    // Another link to the same view with another entity (or the nav's plain "#/audit").
    await page.evaluate(() => {
      (globalThis as unknown as { location: { hash: string } }).location.hash =
        '#/audit?entity=second-filter';
    });
    await settled(page);
    await expect
      .poll(() => page.inputValue('#audit-entity'), { timeout: 3_000 })
      .toBe('second-filter');

    // A filter typed in the view is in the address too: a reload shows the same list.
    await page.fill('#audit-entity', 'third-filter');
    await page.press('#audit-entity', 'Enter');
    await settled(page);
    expect(new URL(page.url()).hash).toBe('#/audit?entity=third-filter');
    await page.reload();
    await settled(page);
    expect(await page.inputValue('#audit-entity')).toBe('third-filter');
  });
});

/** Submits the form on `page` and returns what it says of the answer. */
async function save(page: Page): Promise<string> {
  const answered = page.waitForResponse((res) => res.request().method() === 'PUT');
  await page.click('form.editor button[type="submit"]');
  await answered;
  return (await page.locator('[data-testid="outcome"]').textContent()) ?? '';
}

describe('the console, editing a document someone else edits', () => {
  it('never saves over a change made in another tab since it opened the document', async () => {
    await request('PUT', `${api.url}/v1/admin/resources/two-tabs`, { description: 'first' });
    const [mine, theirs] = [await browser.newPage(), await browser.newPage()];
    await open(mine, '#/config/resource/two-tabs');
    await open(theirs, '#/config/resource/two-tabs');
    await theirs.fill('[data-field="description"]', 'theirs');
    expect(await save(theirs)).toContain('Saved resource two-tabs (version 2)');
    // Their version line follows the save, and their next save writes over it.
    expect(await theirs.textContent('[data-testid="version"]')).toContain('Version 2');
    await theirs.fill('[data-field="description"]', 'theirs again');
    expect(await save(theirs)).toContain('(version 3)');

    await mine.fill('[data-field="description"]', 'mine');
    const said = await save(mine);
    expect(said).toContain('changed elsewhere since you opened it');
    expect(await mine.inputValue('[data-field="description"]')).toBe('mine'); // edits kept
    const stored = await request('GET', `${api.url}/v1/admin/resources/two-tabs`);
    expect(stored.body).toMatchObject({ version: 3, config: { description: 'theirs again' } });
  });

  it('creates only what does not exist yet: a taken name is refused, not replaced', async () => {
    await request('PUT', `${api.url}/v1/admin/resources/taken`, { description: 'kept' });
    const page = await browser.newPage();
    await open(page, '#/config/resource');
    await page.fill('[data-field="resource"]', 'taken');
    await page.fill('[data-field="description"]', 'replaced?');
    expect(await save(page)).toContain('a resource named taken already exists');
    const stored = await request('GET', `${api.url}/v1/admin/resources/taken`);
    expect(stored.body).toMatchObject({ version: 1, config: { description: 'kept' } });

    // A new one is created, and then edited as what it now is, under its name.
    await page.fill('[data-field="resource"]', 'fresh');
    expect(await save(page)).toContain('Saved resource fresh (version 1)');
    expect(page.url()).toContain('#/config/resource/fresh');
    expect(await page.locator('main h2').first().textContent()).toBe('resource fresh');
    await page.fill('[data-field="description"]', 'edited');
    expect(await save(page)).toContain('Saved resource fresh (version 2)');
  });

  it('saves once when Create or Save is clicked twice, and says it was saved', async () => {
    const page = await browser.newPage();
    const puts: number[] = [];
    page.on('response', (res) => {
      if (res.request().method() === 'PUT') puts.push(res.status());
    });
    const saveTwice = async () => {
      const answered = page.waitForResponse((res) => res.request().method() === 'PUT');
      await page.dblclick('form.editor button[type="submit"]');
      await answered;
      await page.waitForSelector('form.editor button[type="submit"]:not([disabled])');
      return page.locator('[data-testid="outcome"]').textContent();
    };
    await open(page, '#/config/resource');
    await page.fill('[data-field="resource"]', 'double-click');
    expect(await saveTwice()).toContain('Saved resource double-click (version 1)');
    await page.fill('[data-field="description"]', 'second');
    expect(await saveTwice()).toContain('Saved resource double-click (version 2)');
    expect(puts).toEqual([201, 200]);
  });
});

describe('npm start, addressed by name', () => {
  const hostAnswers = (host: string, path = '/v1/admin/resources') =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${api.url}${path}`, { headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });

  it("refuses a name of another site (DNS rebinding), and answers localhost's and addresses", async () => {
    const port = new URL(api.url).port;
    expect(await hostAnswers(`rebound.example:${port}`)).toBe(403);
    expect(await hostAnswers('rebound.example')).toBe(403);
    expect(await hostAnswers(`localhost:${port}`)).toBe(200);
    expect(await hostAnswers(`LOCALHOST:${port}`)).toBe(200);
    expect(await hostAnswers(`app.localhost:${port}`)).toBe(200);
    expect(await hostAnswers(`localhost.:${port}`)).toBe(200); // the same name, fully qualified
    expect(await hostAnswers(`app.localhost.:${port}`)).toBe(200);
    expect(await hostAnswers(`[evil.example]:${port}`)).toBe(403);
    expect(await hostAnswers(`127.0.0.1:${port}`)).toBe(200);
    expect(await hostAnswers(`[::1]:${port}`)).toBe(200);
    // The console's page too: a rebound page would otherwise run as the console.
    expect(await hostAnswers(`rebound.example:${port}`, '/console')).toBe(403);
    expect(await hostAnswers(`localhost:${port}`, '/console')).toBe(200);
  });
});

describe("the console's proxy, passing an answer back", () => {
  it("never lets an answer run as a page on the console's origin (which the proxy signs for)", async () => {
    // HTML the endpoint (or a WAF, or a custom domain's error page) answers would run on
    // 127.0.0.1:<port>, where its script could call /v1/ with the console's own Origin.
    const html = createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<!doctype html><script>globalThis.ranOnConsoleOrigin = 1</script>Bad gateway');
    });
    await new Promise<void>((resolve) => html.listen(0, '127.0.0.1', resolve));
    const proxied = await startConsoleProxy({
      endpoint: `http://127.0.0.1:${(html.address() as AddressInfo).port}`,
      region: 'eu-west-1',
      credentials: {
        accessKeyId: 'AKIACONSOLEEDGES',
        secretAccessKey: 'console-edges-secret-not-a-real-one-0123456789',
      },
      port: 0,
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${proxied.url}/v1/admin/resources`);
      const ran = await page.evaluate(
        () => (globalThis as { ranOnConsoleOrigin?: number }).ranOnConsoleOrigin ?? 0,
      );
      expect(ran).toBe(0);
    } finally {
      await proxied.close();
      html.closeAllConnections();
      html.close();
    }
  });
});
