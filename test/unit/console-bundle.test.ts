/**
 * The console's static files: small enough to load at once (under 200 KB gzipped, all of them),
 * and only what the page links to — no other origin named anywhere in the page.
 */
import { gzipSync } from 'node:zlib';
import { buildConsole } from '@sluice/console/build';
import { describe, expect, it } from 'vitest';

const MAX_GZIPPED_BYTES = 200 * 1024;

describe('the console bundle', () => {
  it('is under 200 KB gzipped, page, script and styles together', async () => {
    const files = await buildConsole();
    expect(files.map((f) => f.name).sort()).toEqual(['console.css', 'console.js', 'index.html']);
    const gzipped = files.reduce((sum, f) => sum + gzipSync(f.body).length, 0);
    console.log(`console bundle: ${gzipped} bytes gzipped`);
    expect(gzipped).toBeLessThan(MAX_GZIPPED_BYTES);
  });

  it('loads nothing from another origin', async () => {
    const page = (await buildConsole()).find((f) => f.name === 'index.html');
    const html = new TextDecoder().decode(page?.body);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });
});
