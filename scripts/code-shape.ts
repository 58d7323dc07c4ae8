/**
 * `npm run lint` (after Biome): the shape of the code a maintainer meets, printed and held.
 *
 * - No function in the packages' sources over {@link MAX_FUNCTION_LINES} lines (a function, a
 *   method, an arrow function: its whole span, nested functions included).
 * - No source file over {@link MAX_FILE_LINES} lines, but the route table, which reads as a table.
 * - README.md at most {@link MAX_README_LINES} lines.
 * - The names each package's entry points export, printed (an API report in `api/` holds them:
 *   test/unit/api-report.test.ts).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { exportedNames, publishedPackages } from './api-report.js';

export const MAX_FUNCTION_LINES = 80;
export const MAX_FILE_LINES = 400;
export const MAX_README_LINES = 250;

/** Source folders of the packages, from the repository root. */
export const SOURCE_DIRS = [
  'packages/core/src',
  'packages/client/src',
  'packages/local/src',
  'packages/cli/src',
  'packages/console/src',
  'lambdas/src',
  'lib/src',
];

/** Files allowed past {@link MAX_FILE_LINES}: the route table reads as one table. */
const LONG_FILES_ALLOWED = new Set(['lambdas/src/routes.ts']);

/** One function-like span. */
export interface Span {
  readonly file: string;
  readonly name: string;
  readonly line: number;
  readonly lines: number;
}

function nameOf(node: ts.Node): string {
  if (
    (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isAccessor(node)) &&
    node.name
  )
    return node.name.getText();
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText();
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText();
  return '(anonymous)';
}

/** Every function-like node of a source text, with its length in lines. */
export function functionSpans(file: string, text: string): Span[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const spans: Span[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      spans.push({ file, name: nameOf(node), line: start + 1, lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return spans;
}

function sourceFiles(root: string, dir: string): string[] {
  const full = join(root, dir);
  let entries: string[];
  try {
    entries = readdirSync(full);
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = join(full, entry);
    if (statSync(path).isDirectory()) return sourceFiles(root, relative(root, path));
    return entry.endsWith('.ts') && !entry.endsWith('.d.ts') ? [relative(root, path)] : [];
  });
}

/** What the shape check finds in the repository at `root`. */
export interface Shape {
  readonly longestFunctions: readonly Span[];
  readonly longFunctions: readonly Span[];
  readonly files: readonly { readonly file: string; readonly lines: number }[];
  readonly longFiles: readonly { readonly file: string; readonly lines: number }[];
  readonly readmeLines: number;
}

export function shapeOf(root: string): Shape {
  const files = SOURCE_DIRS.flatMap((dir) => sourceFiles(root, dir)).map((file) => {
    const text = readFileSync(join(root, file), 'utf8');
    return { file, text, lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0) };
  });
  const spans = files
    .flatMap(({ file, text }) => functionSpans(file, text))
    .sort((a, b) => b.lines - a.lines);
  const sized = files.map(({ file, lines }) => ({ file, lines })).sort((a, b) => b.lines - a.lines);
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  return {
    longestFunctions: spans.slice(0, 5),
    longFunctions: spans.filter((s) => s.lines > MAX_FUNCTION_LINES),
    files: sized,
    longFiles: sized.filter((f) => f.lines > MAX_FILE_LINES && !LONG_FILES_ALLOWED.has(f.file)),
    readmeLines: readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0),
  };
}

/**
 * How many names each published package exports, for the summary: its entry points in the order
 * of its `exports`, an `internal` one (not for users) counted apart.
 */
export function exportCounts(root: string): string[] {
  const packages = publishedPackages(root);
  const names = exportedNames(root, packages);
  const width = Math.max(...packages.map((p) => p.name.length));
  return packages.map((pkg) => {
    const counted = pkg.entryPoints.map((e) => ({
      subpath: e.specifier === pkg.name ? '.' : e.specifier.slice(pkg.name.length),
      count: names.get(e.specifier)?.length ?? 0,
    }));
    const internal = counted.filter((c) => c.subpath === '/internal');
    const user = counted.filter((c) => c.subpath !== '/internal');
    const total = user.reduce((sum, c) => sum + c.count, 0);
    const parts =
      user.length > 1 ? ` (${user.map((c) => `${c.subpath} ${c.count}`).join(', ')})` : '';
    const apart = internal.map((c) => `; ${c.subpath} ${c.count}, not for users`).join('');
    return `  ${pkg.name.padEnd(width)} ${String(total).padStart(4)}${parts}${apart}`;
  });
}

function main(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const shape = shapeOf(root);
  const [longest] = shape.longestFunctions;
  const [largest] = shape.files.filter((f) => !LONG_FILES_ALLOWED.has(f.file));
  console.log(
    `code shape: ${shape.files.length} source files; longest function ${longest?.lines ?? 0} lines` +
      ` (${longest ? `${longest.file}:${longest.line} ${longest.name}` : '-'}, at most ${MAX_FUNCTION_LINES});` +
      ` largest file ${largest?.lines ?? 0} lines (${largest?.file ?? '-'}, at most ${MAX_FILE_LINES});` +
      ` README.md ${shape.readmeLines} lines (at most ${MAX_README_LINES})`,
  );
  console.log('exports per package (api/*.api.md lists them):');
  for (const line of exportCounts(root)) console.log(line);
  const problems = [
    ...shape.longFunctions.map(
      (s) => `${s.file}:${s.line}  ${s.name}: ${s.lines} lines (at most ${MAX_FUNCTION_LINES})`,
    ),
    ...shape.longFiles.map((f) => `${f.file}: ${f.lines} lines (at most ${MAX_FILE_LINES})`),
    ...(shape.readmeLines > MAX_README_LINES
      ? [`README.md: ${shape.readmeLines} lines (at most ${MAX_README_LINES})`]
      : []),
  ];
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
