/**
 * The API reports in api/ are what the packages export today: every name of every entry point,
 * its kind and its declaration, and the declarations those reach without it exporting them
 * (scripts/api-report.ts). A change to what users can import, or to what they meet through it,
 * shows as a change to a checked-in file; this fails, with the lines that differ, until it is
 * made. A fixture package (test/unit/fixtures/api-report) holds what is reached and what is not.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  apiReports,
  type EntryApi,
  exportsOf,
  lineDiff,
  type PublishedPackage,
  publishedPackages,
  renderReport,
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
  let apis: Map<string, EntryApi>;
  let reports: Map<string, string>;
  beforeAll(() => {
    // One program over every package's sources, declarations emitted in memory: a few seconds.
    apis = exportsOf(ROOT, packages);
    reports = apiReports(ROOT, packages, apis);
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
    const names = apis.get('@sluice/core')?.exported.map((e) => e.name) ?? [];
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

  it("shows what @sluice/core's names reach but it does not export, where each is declared", () => {
    const reachable = apis.get('@sluice/core')?.reachable ?? [];
    const names = reachable.map((r) => r.name);
    // Answers users get (usage history, top entities, alerts, admin writes and pages, the
    // aggregator's report), and what Limiter and the stores take and give.
    for (const name of [
      'UsagePeriod',
      'TopEntity',
      'ListedAlert',
      'WriteResult',
      'AuditEntry',
      'Page',
      'ApplyReport',
      'EngineState',
      'Combiner',
      'AlertSender',
      'ItemUpdate',
      'ItemState',
    ])
      expect(names).toContain(name);
    expect(reachable.find((r) => r.name === 'UsagePeriod')).toMatchObject({
      kind: 'interface',
      path: 'packages/core/src/usage/history.ts',
      declaration: expect.stringContaining('readonly leases: number;'),
    });
    // Not what the entry point exports itself, nor a dependency's.
    expect(names).not.toContain('Limiter');
    expect(names).not.toContain('DynamoDBClient');
    const report = reports.get('api/core.api.md') as string;
    expect(report).toContain('### Reachable, not exported from `@sluice/core`');
    expect(report).toContain(
      '| `UsagePeriod` | interface | `packages/core/src/usage/history.ts` |',
    );
  });
});

describe('declarations reached but not exported (test/unit/fixtures/api-report)', () => {
  const FIXTURES = 'test/unit/fixtures/api-report';
  const entry = (file: string, specifier = `fixture/${file.replace(/\.ts$/, '')}`) => ({
    specifier,
    source: join(ROOT, FIXTURES, file),
  });
  const fixture: PublishedPackage = {
    name: 'fixture',
    report: 'fixture.api.md',
    entryPoints: [
      entry('reach.ts'),
      entry('shared.ts'),
      entry('internal.ts', 'fixture/internal'),
      entry('answer.ts'),
      entry('answer-narrowed.ts'),
    ],
  };
  let apis: Map<string, EntryApi>;
  beforeAll(() => {
    apis = exportsOf(ROOT, [fixture]);
  });

  it('are in the report: a field taken out of one changes it by that line', () => {
    // The two entry points' reports, told apart by their names only.
    const reportOf = (name: string) =>
      renderReport({ ...fixture, entryPoints: [entry(`${name}.ts`)] }, apis).replaceAll(
        name,
        'answer',
      );
    const [answer, narrowed] = [reportOf('answer'), reportOf('answer-narrowed')];
    expect(answer).toContain('### Reachable, not exported from `fixture/answer`');
    expect(answer).toContain(`| \`Period\` | interface | \`${FIXTURES}/answer.ts\` |`);
    expect(narrowed).not.toBe(answer);
    expect(narrowed).toBe(answer.replace('  readonly leases: number;\n', ''));
  });

  it('are what a `.d.ts` shows, aliases resolved, each once, sorted, with its file', () => {
    const reachable = apis.get('fixture/reach')?.reachable ?? [];
    expect(reachable.map((r) => [r.name, r.kind, r.path])).toEqual([
      // Through an import under another name: declared as Aliased, in its own file.
      ['Aliased', 'interface', `${FIXTURES}/reach-other.ts`],
      ['Answer', 'interface', `${FIXTURES}/reach.ts`],
      // `extends`.
      ['Base', 'interface', `${FIXTURES}/reach.ts`],
      // `typeof`.
      ['BRAND', 'const', `${FIXTURES}/reach.ts`],
      // `implements`.
      ['Contract', 'interface', `${FIXTURES}/reach.ts`],
      ['Cursor', 'type', `${FIXTURES}/reach.ts`],
      // A const's inferred type.
      ['Inferred', 'interface', `${FIXTURES}/reach.ts`],
      // Exported only by an internal entry point: users cannot import it.
      ['InternalOnly', 'interface', `${FIXTURES}/internal.ts`],
      // `extends` a name of a module imported whole.
      ['Root', 'interface', `${FIXTURES}/reach-other.ts`],
    ]);
    expect(reachable.find((r) => r.name === 'Cursor')?.declaration).toBe(
      'type Cursor = string & {\n  readonly brand: typeof BRAND;\n};',
    );
    // Not Hidden (private and # members), InBody (a body), InInitializer (an initializer),
    // Shared (an entry point for users exports it), Limiter (another package's), AbortSignal
    // (TypeScript's lib), Service and Exported (exported here).
    expect(apis.get('fixture/answer')?.reachable.map((r) => r.name)).toEqual(['Period']);
    expect(apis.get('fixture/shared')?.reachable).toEqual([]);
  });
});
