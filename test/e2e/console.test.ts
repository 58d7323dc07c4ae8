/**
 * The console in a real browser (Chromium through playwright-core) against `npm start`: a plan,
 * a resource and an entity made in the forms, calls made through @sluice/client, and the views
 * showing the exact settled figures, a refusal, a field the admin API refused and the audit.
 * Every view: no script or console errors, no serious or critical axe finding, a screenshot.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SluiceClient } from '@sluice/client';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import {
  axeFindings,
  launch,
  outputPath,
  screenshot,
  settled,
  until,
  type Watch,
  watch,
} from '../support/browser.js';

// Refusals are written every 200 ms, so the refusal shows within the poll.
const api = fileApi('console', { SLUICE_DENIAL_FLUSH_MS: '200' });

/** A name chosen to be hostile to plain objects: it must read as itself everywhere. */
const ENTITY = 'constructor';
const PLAN = 'console-plan';
const RESOURCE = 'gpt-console';

let browser: Browser;
let page: Page;
let watched: Watch;

beforeAll(async () => {
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  watched = watch(page);
});

afterAll(async () => {
  await browser?.close();
});

const open = async (hash: string) => {
  await page.goto(`${api.url}/console${hash}`);
  await settled(page);
};

/** The README's picture of the entity view, written by `npm run screenshot` (this file). */
const DOCS_SCREENSHOT = fileURLToPath(new URL('../../docs/console-entity.png', import.meta.url));

/** Checks the view as it stands: axe, errors so far, and a screenshot named `name`. */
async function inspect(name: string) {
  expect(await axeFindings(page), `axe on ${name}`).toEqual([]);
  expect(watched.problems, `errors on ${name}`).toEqual([]);
  const path = await screenshot(page, name);
  if (name === 'entity' && process.env.SLUICE_DOCS_SCREENSHOT === '1')
    copyFileSync(path, DOCS_SCREENSHOT);
}

/** Submits the form on the page and returns what it says of the answer. */
const save = async () => {
  const answered = page.waitForResponse((res) => res.request().method() === 'PUT');
  await page.click('form.editor button[type="submit"]');
  await answered;
  await page.waitForSelector('[data-testid="outcome"]');
  return page.textContent('[data-testid="outcome"]');
};

/** The text of every element `selector` finds, now (no waiting for one to appear). */
const textOf = async (selector: string) =>
  (await page.locator(selector).allTextContents()).join('\n');

describe('the console', () => {
  it('paints its first view from the local server, with its own files only', async () => {
    await open('#/');
    const paint = await page.evaluate(
      () => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
    );
    // Timing is recorded, not judged (a test never depends on the machine's speed).
    writeFileSync(
      outputPath('first-paint.json'),
      JSON.stringify({ firstContentfulPaintMs: paint }),
    );
    expect(await page.locator('nav a').allInnerTexts()).toEqual([
      'Overview',
      'Top',
      'Configuration',
      'Alerts',
      'Audit',
    ]);
    await inspect('overview-empty');
  });

  it('creates a resource, a plan and an entity through the forms', async () => {
    await open('#/config/resource');
    await page.fill('[data-field="resource"]', RESOURCE);
    await page.fill('[data-field="price.input"]', '1');
    await page.fill('[data-field="price.output"]', '2');
    expect(await save()).toContain(`Saved resource ${RESOURCE}`);

    await open('#/config/plan');
    await page.fill('[data-field="plan"]', PLAN);
    await page.click('text=Add a limit');
    await page.fill('[data-field="limits[0].name"]', 'daily_tokens');
    await page.fill('[data-field="limits[0].metric"]', 'tokens');
    await page.fill('[data-field="limits[0].limit"]', '2000');
    await page.selectOption('[data-field="limits[0].kind"]', 'window');
    expect(await save()).toContain(`Saved plan ${PLAN}`);
    await inspect('plan-form');

    await open('#/config/entity');
    await page.fill('[data-field="entity"]', ENTITY);
    await page.fill('[data-field="plan"]', PLAN);
    await page.fill('[data-field="timezone"]', 'Asia/Kolkata');
    expect(await save()).toContain(`Saved entity ${ENTITY}`);
    await open('#/config');
    await inspect('configuration');
  });

  it('shows the exact settled usage, the headroom left and a refusal', async () => {
    const client = new SluiceClient({ endpoint: api.url });
    const lease = await client.acquire({
      entity: ENTITY,
      resource: RESOURCE,
      usage: { input_tokens: 400, output_tokens: 100 },
    });
    if (!lease.allowed) throw new Error(`refused: ${JSON.stringify(lease)}`);
    await client.release(lease.leaseId, { input_tokens: 300, output_tokens: 50 });
    // 350 of the day's 2,000 tokens used: 1,700 more cannot fit.
    const refused = await client.acquire({
      entity: ENTITY,
      resource: RESOURCE,
      usage: { input_tokens: 1_700 },
    });
    expect(refused.allowed).toBe(false);

    await open(`#/entity/${ENTITY}`);
    expect(await page.textContent('h1')).toBe(ENTITY);
    const headroom = page.locator(`[data-limit="entity.daily_tokens"]`);
    expect(await headroom.textContent()).toContain('1,650 tokens left of 2,000 tokens');
    const tokens = () => textOf('[data-testid="usage-tokens"]');
    const cost = () => textOf('[data-testid="usage-cost"]');
    const refusals = () => textOf('[data-testid="refusals"]');
    await until(
      page,
      async () =>
        (await tokens()).includes('350 tokens') &&
        (await cost()).includes('$0.0004') &&
        (await refusals()).includes('daily_tokens'),
      'the settled usage and the refusal on the entity view',
    );
    expect(await tokens()).toContain('300 tokens'); // input
    expect(await tokens()).toContain('50 tokens'); // output
    expect(await page.locator('[data-testid="refusals"] tbody tr').allInnerTexts()).toEqual([
      'daily_tokens\t1',
    ]);
    expect(await page.textContent('main')).toContain('Asia/Kolkata');
    await inspect('entity');

    await open('#/');
    await until(
      page,
      async () =>
        (await textOf('[data-testid="overview-decisions"]')).includes('refused by daily_tokens'),
      'the refusal on the overview',
    );
    expect(await page.textContent('[data-testid="today"]')).toContain('350 tokens');
    await inspect('overview');
  });

  it('shows the field the admin API refused next to it, and the edit in the audit', async () => {
    await open(`#/config/plan/${PLAN}`);
    await page.fill('[data-field="limits[0].limit"]', '-5');
    expect(await save()).toContain('Not saved: limits[0].limit');
    const invalid = page.locator('.field.invalid');
    expect(await invalid.locator('[data-field="limits[0].limit"]').count()).toBe(1);
    expect(await invalid.locator('.field-error').textContent()).not.toBe('');
    await inspect('plan-refused');

    await page.fill('[data-field="limits[0].limit"]', '3000');
    expect(await save()).toContain(`Saved plan ${PLAN} (version 2)`);
    await open('#/audit');
    const audit = () => page.locator('[data-testid="audit"] tbody tr').allInnerTexts();
    const planRows = (await audit()).filter((row) => row.includes(`plan ${PLAN}`));
    expect(planRows).toHaveLength(2);
    expect(planRows[0]).toContain('limits'); // the edit: newest first
    await page.fill('#audit-entity', ENTITY);
    await page.press('#audit-entity', 'Enter'); // Sluice filters (?entity=)
    await expect
      .poll(audit, { timeout: 5_000 })
      .toEqual([expect.stringContaining(`entity ${ENTITY}`)]);
    await inspect('audit');
  });

  it('lists top entities and alerts, each view usable on a narrow window', async () => {
    await open('#/top');
    // The entity counts on the board of its own day (Kolkata's): from 18:30 UTC that is the UTC
    // date's next, which the view does not show until asked.
    const localDay = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Kolkata' }).format(
      new Date(),
    );
    await page.fill('#top-date', localDay);
    expect(await page.locator('[data-testid="top"] tbody tr').first().textContent()).toContain(
      ENTITY,
    );
    await inspect('top');
    await open('#/alerts');
    await inspect('alerts');
    await page.setViewportSize({ width: 420, height: 800 });
    await open(`#/entity/${ENTITY}`);
    const overflow = await page.evaluate<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await inspect('entity-narrow');
    await page.reload();
    await settled(page);
    // Keyboard: the first tab stop is the skip link, and it moves focus to the content.
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement?.textContent')).toBe(
      'Skip to content',
    );
    await page.keyboard.press('Enter');
    expect(await page.evaluate<string>('document.activeElement?.id')).toBe('main');
  });
});
