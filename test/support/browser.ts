/**
 * A real browser for the e2e tier: Debian's Chromium (or SLUICE_CHROMIUM) driven by
 * playwright-core, with what every page must hold to: no script errors and no console errors
 * beyond the API's own refusals the page shows (a 4xx it asked for), and an axe-core scan with
 * no serious or critical finding. Screenshots go to `test-output/console/`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';

/** Where the browser tests write their screenshots and figures. */
export const OUTPUT_DIR = fileURLToPath(new URL('../../test-output/console/', import.meta.url));

/** Chromium's path: SLUICE_CHROMIUM, else `chromium` on the PATH; a test fails without one. */
export function chromiumPath(): string {
  const named = process.env.SLUICE_CHROMIUM;
  if (named) return named;
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'no Chromium: install it (apt-get install -y chromium; .ci/run does) or set SLUICE_CHROMIUM',
    );
  }
}

export function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
}

/** What went wrong on a page: script errors, and console errors not explained by a 4xx. */
export interface Watch {
  readonly problems: string[];
  /** Statuses of the API's refusals the page received, by URL. */
  readonly refusals: { url: string; status: number }[];
}

const REFUSED = /^Failed to load resource: the server responded with a status of (4\d\d)\b/;

/**
 * Watches `page`: an uncaught error or a console error is a problem, except Chromium's own line
 * for an API answer with a 4xx status (a refusal the page shows: a 404 of a document not
 * stored, a field the admin API refused), which is recorded as a refusal.
 */
export function watch(page: Page): Watch {
  const watched: Watch = { problems: [], refusals: [] };
  page.on('pageerror', (error) => watched.problems.push(`page error: ${error.message}`));
  page.on('response', (res) => {
    if (res.status() >= 400) watched.refusals.push({ url: res.url(), status: res.status() });
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const status = REFUSED.exec(message.text())?.[1];
    const url = message.location().url;
    const api = status && new URL(url).pathname.startsWith('/v1/');
    if (!api) watched.problems.push(`console error: ${message.text()} (${url})`);
  });
  return watched;
}

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: unknown }[] }[];
}

/** axe-core's serious and critical findings on the page as it stands (WCAG 2 A and AA rules). */
export async function axeFindings(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') is left alone.
  await page.evaluate(AXE);
  const result = await page.evaluate<AxeResult>(
    `axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })`,
  );
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) => `${v.impact}: ${v.id} (${v.help}) at ${JSON.stringify(v.nodes.map((n) => n.target))}`,
    );
}

/** The path of `file` in {@link OUTPUT_DIR}, which is made if it is not there yet. */
export function outputPath(file: string): string {
  if (!existsSync(OUTPUT_DIR)) mkdirSync(OUTPUT_DIR, { recursive: true });
  return join(OUTPUT_DIR, file);
}

/** Writes a full-page screenshot to {@link OUTPUT_DIR} and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const path = outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Loads `hash` of the console again and again until `ready` holds on the page (usage history
 * is counted from the stream within seconds): fails with what the page last showed.
 */
export async function until(
  page: Page,
  ready: () => Promise<boolean>,
  what: string,
  deadlineMs = 30_000,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    await settled(page);
    if (await ready()) return;
    if (Date.now() > end)
      throw new Error(
        `${what}: not shown after ${deadlineMs} ms; the page showed:\n${await page.textContent('main')}`,
      );
    await page.reload();
  }
}

/** Waits until every load of the view has ended (nothing says "Loading…"). */
export async function settled(page: Page): Promise<void> {
  await page.waitForSelector('main');
  // A function, not a string: the page's CSP refuses to evaluate strings (no 'unsafe-eval').
  await page.waitForFunction(() => {
    const { document } = globalThis as unknown as {
      document: { querySelector(s: string): unknown };
    };
    return !document.querySelector('main [role="status"].muted');
  });
}
