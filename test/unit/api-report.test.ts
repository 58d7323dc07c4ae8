/**
 * The API reports in api/ are what the packages export today: every name of every entry point,
 * its kind and its declaration (scripts/api-report.ts). A change to what users can import shows
 * as a change to a checked-in file; this fails, with the lines that differ, until it is made.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  apiReports,
  type Exported,
  exportsOf,
  lineDiff,
  publishedPackages,
  strayReports,
} from '../../scripts/api-report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** What is checked in, or undefined when it is not there yet. */
function checkedIn(file: string): string | undefined {
  try {
    return readFileSync(join(ROOT, file), 'utf8');
  } catch {
    return undefined;
  }
}

describe('API reports (api/*.api.md)', () => {
  const packages = publishedPackages(ROOT);
  let exported: Map<string, Exported[]>;
  let reports: Map<string, string>;
  beforeAll(() => {
    // One program over every package's sources, declarations emitted in memory: a few seconds.
    exported = exportsOf(ROOT, packages);
    reports = apiReports(ROOT, packages, exported);
  });

  it('cover every published package, and nothing else', () => {
    expect([...reports.keys()].sort()).toEqual(packages.map((p) => `api/${p.report}`).sort());
    expect(strayReports(ROOT)).toEqual([]);
  });

  it.each(packages.map((p) => `api/${p.report}`))('%s is what the sources export', (file) => {
    const generated = reports.get(file) as string;
    const current = checkedIn(file);
    if (current === generated) return;
    const what =
      current === undefined
        ? `${file} is missing.`
        : `${file} differs from what the sources export (- checked in, + generated):\n\n${lineDiff(current, generated)}`;
    expect.fail(
      `${what}\n\nIf the change to the API is meant, run \`npm run api-report\` and commit the report with it.`,
    );
  });

  it('keeps @sluice/core to the surface users are told to use (docs/sdk.md, README)', () => {
    const core = exported.get('@sluice/core') ?? [];
    const names = core.map((e) => e.name);
    // What the docs' examples import, and the engine's errors.
    for (const name of [
      'Limiter',
      'DynamoDBStore',
      'DynamoDBAdminStore',
      'ensureTable',
      'ConfigAdmin',
      'itemKeys',
      'parseLimits',
      'UsageAggregator',
      'usageHistory',
      'SluiceError',
      'ValidationError',
      'LeaseNotFoundError',
      'LeaseSettledError',
      'StoreUnavailableError',
    ])
      expect(names).toContain(name);
    // The process's memory and the operations standing alone are internal.
    for (const name of ['EngineState', 'Engine', 'acquire', 'adjust', 'release', 'available'])
      expect(names).not.toContain(name);
    expect(names.length).toBeLessThanOrEqual(55);
  });
});
