/**
 * The console at its edges, in Chromium: a view driven by its address, and `sluice console`'s
 * proxy passing back an answer that is a page (from the endpoint, or something in front of it).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsoleProxy } from '../../packages/cli/src/console.js';
import { fileApi } from '../support/api.js';
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
