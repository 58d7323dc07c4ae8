/**
 * `npm run api-report`: writes api/<package>.api.md, one file per published package: every name
 * each of its entry points (package.json `exports`) exports, its kind, and its declaration as the
 * built `.d.ts` has it (comments left out). After them, in a section of their own, each entry
 * point's "forgotten exports" (scripts/api-reachable.ts): the package's declarations that those
 * reach but that neither it nor another entry point for users exports (an answer's type), each
 * with the file it is declared in. test/unit/api-report.test.ts regenerates the reports
 * and fails, with the lines that differ, when a checked-in one is not what the sources export:
 * a change to what users can import is then a change to a file a reviewer reads.
 *
 * The declarations are emitted in memory from the sources (through the `sluice-source`
 * condition), so no build is needed; they are what `tsc -b` writes to each package's `dist/`.
 */

import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { reachableFrom } from './api-reachable.js';

/** Where the reports go, from the repository root. */
export const API_DIR = 'api';

/** Published packages' folders, from the repository root, and their report's file name. */
export const PUBLISHED = [
  { dir: 'packages/core', report: 'core.api.md' },
  { dir: 'packages/client', report: 'client.api.md' },
  { dir: 'packages/local', report: 'local.api.md' },
  { dir: 'packages/cli', report: 'cli.api.md' },
  { dir: 'packages/console', report: 'console.api.md' },
  { dir: 'lambdas', report: 'lambdas.api.md' },
  { dir: 'lib', report: 'cdk.api.md' },
] as const;

/** A declaration longer than this is shown cut, with a hash of the whole (a zod schema's type). */
export const MAX_DECLARATION_CHARS = 1_500;

/** One entry point of a package: `@sluice/core/internal` and the source behind it. */
export interface EntryPoint {
  /** What a user imports: the package's name and the subpath. */
  readonly specifier: string;
  /** Its source file, absolute (the `sluice-source` condition's target). */
  readonly source: string;
}

/** One exported name. */
export interface Exported {
  readonly name: string;
  /** class, function, const, let, interface, type, enum, namespace; `(type only)` when so. */
  readonly kind: string;
  /** As the built `.d.ts` declares it, without comments or `export declare`. */
  readonly declaration: string;
}

/** A declaration an entry point's exports reach (its own or each other's) but it does not export. */
export interface Reachable {
  readonly name: string;
  /** As {@link Exported}'s. */
  readonly kind: string;
  /** The file it is declared in, from the repository root. */
  readonly path: string;
  /** As {@link Exported}'s. */
  readonly declaration: string;
}

/** What an entry point shows: the names it exports, and what they reach that it does not. */
export interface EntryApi {
  readonly exported: readonly Exported[];
  readonly reachable: readonly Reachable[];
}

/** A package: its name, its report's file name, and its entry points. */
export interface PublishedPackage {
  readonly name: string;
  readonly report: string;
  readonly entryPoints: readonly EntryPoint[];
}

interface Manifest {
  readonly name: string;
  readonly exports?: Record<string, { readonly 'sluice-source'?: string } | string>;
}

/** The published packages of the repository at `root`, each with its entry points. */
export function publishedPackages(root: string): PublishedPackage[] {
  return PUBLISHED.map(({ dir, report }) => {
    const manifest = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as Manifest;
    const entryPoints = Object.entries(manifest.exports ?? {}).map(([subpath, target]) => {
      const source = typeof target === 'string' ? undefined : target['sluice-source'];
      if (!source) throw new Error(`${dir}/package.json: ${subpath} has no "sluice-source"`);
      return {
        specifier: subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`,
        source: resolve(root, dir, source),
      };
    });
    return { name: manifest.name, report, entryPoints };
  });
}

/** The compiler options of every package, for one program over all of them. */
function compilerOptions(root: string): ts.CompilerOptions {
  const host: ts.ParseConfigFileHost = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  };
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.base.json'), {}, host);
  if (!parsed) throw new Error('cannot read tsconfig.base.json');
  const { composite: _c, incremental: _i, tsBuildInfoFile: _t, ...options } = parsed.options;
  return {
    ...options,
    declaration: true,
    emitDeclarationOnly: true,
    noEmit: false,
    // The union of the packages' own: the CLI's DOM, the handlers' aws-lambda.
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    types: ['node', 'aws-lambda'],
  };
}

/** A name's kind, from the declaration it resolves to. */
function kindOf(declaration: ts.Declaration): string {
  if (ts.isClassDeclaration(declaration)) return 'class';
  if (ts.isFunctionDeclaration(declaration)) return 'function';
  if (ts.isInterfaceDeclaration(declaration)) return 'interface';
  if (ts.isTypeAliasDeclaration(declaration)) return 'type';
  if (ts.isEnumDeclaration(declaration)) return 'enum';
  if (ts.isModuleDeclaration(declaration)) return 'namespace';
  if (ts.isVariableDeclaration(declaration)) {
    const list = declaration.parent;
    return ts.isVariableDeclarationList(list) && list.flags & ts.NodeFlags.Const ? 'const' : 'let';
  }
  return ts.SyntaxKind[declaration.kind];
}

/** Whether the name is exported as a type only (`export type { X }`, `export { type X }`). */
function typeOnly(symbol: ts.Symbol): boolean {
  return (symbol.declarations ?? []).some(
    (d) => ts.isExportSpecifier(d) && (d.isTypeOnly || d.parent.parent.isTypeOnly),
  );
}

/** The names a top-level statement of a `.d.ts` declares. */
function declaredNames(statement: ts.Statement): string[] {
  if (ts.isVariableStatement(statement))
    return statement.declarationList.declarations.map((d) => d.name.getText());
  const named = statement as ts.Statement & { readonly name?: ts.Node };
  return named.name && ts.isIdentifier(named.name) ? [named.name.text] : [];
}

const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });

/** A statement of a `.d.ts` as the report shows it: no comments, no `export declare`. */
function printed(statement: ts.Statement, file: ts.SourceFile): string {
  const text = printer
    .printNode(ts.EmitHint.Unspecified, statement, file)
    .replace(/^export (default )?/, '')
    .replace(/^declare /, '')
    // The printer indents with four spaces; the repository, with two.
    .replace(/^( {4})+/gm, (indent) => ' '.repeat(indent.length / 2));
  if (text.length <= MAX_DECLARATION_CHARS) return text;
  // Cut at a line's end: what is left out is still told apart by the hash of the whole.
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  const cut = text.slice(0, text.lastIndexOf('\n', MAX_DECLARATION_CHARS));
  return `${cut}\n  /* … cut: ${text.length} characters in all, sha256 ${hash} */`;
}

/** One program over the entry points' sources, and each entry point's module. */
function programOf(root: string, entries: readonly EntryPoint[]) {
  const program = ts.createProgram({
    rootNames: entries.map((e) => e.source),
    options: compilerOptions(root),
  });
  const checker = program.getTypeChecker();
  const moduleOf = (entry: EntryPoint): ts.Symbol => {
    const file = program.getSourceFile(entry.source);
    const module = file && checker.getSymbolAtLocation(file);
    if (!module) throw new Error(`${entry.specifier}: ${entry.source} is not a module`);
    return module;
  };
  return { program, checker, moduleOf };
}

/** The names each entry point of `packages` exports, sorted (no declarations: quicker). */
export function exportedNames(
  root: string,
  packages: readonly PublishedPackage[] = publishedPackages(root),
): Map<string, string[]> {
  const entries = packages.flatMap((p) => p.entryPoints);
  const { checker, moduleOf } = programOf(root, entries);
  return new Map(
    entries.map((entry) => [
      entry.specifier,
      checker
        .getExportsOfModule(moduleOf(entry))
        .map((s) => s.name)
        .sort(compareNames),
    ]),
  );
}

/** The `.d.ts` of every source file of `program`, emitted in memory, by the source's path. */
function emittedDeclarations(program: ts.Program): Map<string, ts.SourceFile> {
  const declarations = new Map<string, ts.SourceFile>();
  program.emit(
    undefined,
    (fileName, text, _bom, _onError, sources) => {
      const [source] = sources ?? [];
      if (source && fileName.endsWith('.d.ts'))
        declarations.set(
          resolve(source.fileName),
          ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true),
        );
    },
    undefined,
    true,
  );
  return declarations;
}

/**
 * Every name each entry point of `packages` exports, sorted, with its kind and declaration, and
 * what those declarations reach that it does not export. One program over all of them, its
 * declarations emitted in memory.
 */
export function exportsOf(
  root: string,
  packages: readonly PublishedPackage[] = publishedPackages(root),
): Map<string, EntryApi> {
  const entries = packages.flatMap((p) => p.entryPoints);
  const { program, checker, moduleOf } = programOf(root, entries);
  const declarations = emittedDeclarations(program);
  /** A declaration's text as its `.d.ts` has it, and the file it is in, from `root`. */
  const declarationOf = (target: ts.Symbol) => {
    const [first] = target.declarations ?? [];
    if (!first) throw new Error(`${target.name} has no declaration`);
    const file = first.getSourceFile();
    const from = relative(root, file.fileName);
    // The repository's own hand-written `.d.ts` is its declaration; a dependency's is not shown.
    const own = file.isDeclarationFile && !from.split(sep).includes('node_modules');
    const emitted = own ? file : declarations.get(resolve(file.fileName));
    const statements = (emitted?.statements ?? []).filter((s) =>
      declaredNames(s).includes(target.name),
    );
    const text = emitted ? statements.map((s) => printed(s, emitted)).join('\n') : '';
    return { first, text, from };
  };
  const targetsOf = (entry: EntryPoint) =>
    checker
      .getExportsOfModule(moduleOf(entry))
      .map((symbol) => ({ symbol, target: resolved(checker, symbol) }));
  const result = new Map<string, EntryApi>();
  for (const pkg of packages) {
    // What users can import from the package: reached from another entry point, it is not
    // listed again there (an internal entry point's names are, when a public one reaches them).
    const importable = new Set(
      pkg.entryPoints
        .filter((e) => !INTERNAL.test(e.specifier))
        .flatMap((e) => targetsOf(e).map((t) => t.target)),
    );
    for (const entry of pkg.entryPoints) {
      const symbols = targetsOf(entry);
      const exported = symbols.map(({ symbol, target }) => {
        const { first, text, from } = declarationOf(target);
        const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(from)?.[1];
        const elsewhere = dependency
          ? `/* ${target.name}: re-exported from ${dependency} */`
          : `/* ${target.name}: declared in ${from} */`;
        const renamed = symbol.name !== target.name ? `// exported as ${symbol.name}\n` : '';
        const kind = kindOf(first);
        const valueKind = !['interface', 'type'].includes(kind);
        return {
          name: symbol.name,
          kind: valueKind && typeOnly(symbol) ? `${kind} (type only)` : kind,
          declaration: renamed + (text || elsewhere),
        };
      });
      const inPackage = declaredIn(root, program, entry);
      const roots = symbols.map((s) => s.target);
      const shown = (symbol: ts.Symbol) => inPackage(symbol) && !importable.has(symbol);
      const reachable = reachableFrom(checker, roots, shown).map((target) => {
        const { first, text, from } = declarationOf(target);
        return {
          name: target.name,
          kind: kindOf(first),
          path: from,
          declaration: text || `/* ${target.name}: declared in ${from} */`,
        };
      });
      result.set(entry.specifier, {
        exported: exported.sort((a, b) => compareNames(a.name, b.name)),
        reachable: reachable.sort(
          (a, b) =>
            compareNames(a.name, b.name) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
        ),
      });
    }
  }
  return result;
}

/** A symbol, or what it is an alias of. */
function resolved(checker: ts.TypeChecker, symbol: ts.Symbol): ts.Symbol {
  return symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
}

/**
 * Whether a symbol is declared in the package of `entry`: in the repository, not in a dependency
 * (node_modules, TypeScript's own lib), and not in another published package (whose report shows
 * it, from the entry point that exports it: packages import each other through entry points).
 */
function declaredIn(
  root: string,
  program: ts.Program,
  entry: EntryPoint,
): (symbol: ts.Symbol) => boolean {
  const others = PUBLISHED.map((p) => `${resolve(root, p.dir)}${sep}`).filter(
    (dir) => !entry.source.startsWith(dir),
  );
  return (symbol) =>
    (symbol.declarations ?? []).some((d) => {
      const file = d.getSourceFile();
      const path = resolve(file.fileName);
      return (
        path.startsWith(`${resolve(root)}${sep}`) &&
        !path.split(sep).includes('node_modules') &&
        !program.isSourceFileDefaultLibrary(file) &&
        !program.isSourceFileFromExternalLibrary(file) &&
        !others.some((dir) => path.startsWith(dir))
      );
    });
}

/** Case-insensitive, then case-sensitive: the same order everywhere. */
function compareNames(a: string, b: string): number {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()];
  if (x !== y) return x < y ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The kinds, in the order a report counts them. */
const KINDS = ['class', 'function', 'const', 'let', 'enum', 'namespace', 'interface', 'type'];

/** Entry points whose names are not for users: their section says so. */
const INTERNAL = /\/internal$/;

/** "3 names: 1 function, 2 interface." */
function counted(names: readonly { readonly kind: string }[]): string {
  const summary = KINDS.map((kind) => {
    const n = names.filter((e) => e.kind.replace(' (type only)', '') === kind).length;
    return n > 0 ? `${n} ${kind}` : '';
  })
    .filter(Boolean)
    .join(', ');
  return `${names.length} name${names.length === 1 ? '' : 's'}: ${summary || 'none'}.`;
}

/**
 * A package's report: for each entry point, its names and kinds, then their declarations, then
 * what those reach that it does not export (when anything), each with where it is declared.
 */
export function renderReport(pkg: PublishedPackage, apis: Map<string, EntryApi>): string {
  const lines = [
    `# API report: ${pkg.name}`,
    '',
    `Every name each entry point of ${pkg.name} exports, its kind, and its declaration as the`,
    'built `.d.ts` has it (comments left out); then the declarations those reach that the entry',
    "point does not export. Generated by `npm run api-report`; don't edit it:",
    'test/unit/api-report.test.ts fails when it differs from what the sources export.',
  ];
  for (const entry of pkg.entryPoints) {
    const { exported: names, reachable } = apis.get(entry.specifier) ?? NOTHING;
    lines.push('', `## \`${entry.specifier}\``, '');
    if (INTERNAL.test(entry.specifier))
      lines.push(
        "Not for users: Sluice's own packages import these, and they change without notice.",
        '',
      );
    lines.push(counted(names), '');
    lines.push('| Name | Kind |', '| --- | --- |');
    for (const { name, kind } of names) lines.push(`| \`${name}\` | ${kind} |`);
    if (names.length > 0) {
      lines.push('', '```ts');
      lines.push(names.map((n) => n.declaration).join('\n\n'));
      lines.push('```');
    }
    if (reachable.length === 0) continue;
    lines.push('', `### Reachable, not exported from \`${entry.specifier}\``, '');
    lines.push(
      'Declarations of the package that the ones above reach (in a type, `extends`, `implements`',
      'or `typeof`, directly or through each other) and that neither this entry point nor another',
      'one for users exports: their names cannot be imported, but a change to one is a change to',
      'what users of the names above see.',
      '',
    );
    lines.push(counted(reachable), '');
    lines.push('| Name | Kind | Declared in |', '| --- | --- | --- |');
    for (const { name, kind, path } of reachable)
      lines.push(`| \`${name}\` | ${kind} | \`${path}\` |`);
    lines.push('', '```ts');
    lines.push(reachable.map((r) => r.declaration).join('\n\n'));
    lines.push('```');
  }
  return `${lines.join('\n')}\n`;
}

const NOTHING: EntryApi = { exported: [], reachable: [] };

/** Every report, by its path from the repository root. */
export function apiReports(
  root: string,
  packages: readonly PublishedPackage[] = publishedPackages(root),
  apis: Map<string, EntryApi> = exportsOf(root, packages),
): Map<string, string> {
  return new Map(packages.map((p) => [`${API_DIR}/${p.report}`, renderReport(p, apis)]));
}

/**
 * The lines that differ between two texts, `-` for what was and `+` for what is, each run with
 * up to `context` unchanged lines around it and its line number in the new text.
 */
export function lineDiff(was: string, is: string, context = 2): string {
  const a = was.split('\n');
  const b = is.split('\n');
  // Longest common subsequence of lines, from the end; the texts are a few thousand lines at most.
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  const common = (i: number, j: number) => lcs[i * width + j] as number;
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i * width + j] =
        a[i] === b[j] ? common(i + 1, j + 1) + 1 : Math.max(common(i + 1, j), common(i, j + 1));
  const ops: { op: ' ' | '-' | '+'; line: string; at: number }[] = [];
  let [i, j] = [0, 0];
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push({ op: ' ', line: a[i] as string, at: j + 1 });
      i++;
      j++;
    } else if (i < a.length && (j >= b.length || common(i + 1, j) >= common(i, j + 1))) {
      ops.push({ op: '-', line: a[i] as string, at: j + 1 });
      i++;
    } else {
      ops.push({ op: '+', line: b[j] as string, at: j + 1 });
      j++;
    }
  }
  const shown = new Set<number>();
  ops.forEach((o, k) => {
    if (o.op === ' ') return;
    for (let c = Math.max(0, k - context); c <= Math.min(ops.length - 1, k + context); c++)
      shown.add(c);
  });
  const out: string[] = [];
  let last = -2;
  for (const k of [...shown].sort((x, y) => x - y)) {
    const o = ops[k] as (typeof ops)[number];
    if (k !== last + 1) out.push(`@@ line ${o.at} @@`);
    out.push(`${o.op} ${o.line}`);
    last = k;
  }
  return out.join('\n');
}

/** Reports in `api/` that no published package makes any more. */
export function strayReports(root: string): string[] {
  const made = new Set<string>(PUBLISHED.map((p) => p.report));
  let files: string[];
  try {
    files = readdirSync(join(root, API_DIR));
  } catch {
    return [];
  }
  return files.filter((f) => f.endsWith('.api.md') && !made.has(f)).map((f) => `${API_DIR}/${f}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  mkdirSync(join(root, API_DIR), { recursive: true });
  for (const [file, text] of apiReports(root)) {
    writeFileSync(join(root, file), text);
    console.log(`wrote ${file}`);
  }
  for (const stray of strayReports(root)) console.error(`${stray}: no package makes it; delete it`);
}
