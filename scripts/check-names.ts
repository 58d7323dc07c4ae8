/**
 * `npm run lint` (after Biome): user-chosen names never key a plain object.
 *
 * Metric, limit, entity, resource, plan and caller names are chosen by users, and a plain `{}` or
 * `Record<string, T>` answers names it was never given: `counts['constructor']` is `Object`,
 * `'toString' in usage` is true. So names are read and written through a `Map`, or read from plain
 * wire objects through a guard that sees own properties only (`Object.hasOwn`).
 *
 * This scan type-checks `packages/*\/src`, `lambdas/src` and `lib/src` with each package's own
 * tsconfig and fails on:
 * - `obj[key]` (read, write, compound assignment, `??=`, `++`, `delete`, or a computed key in a
 *   destructuring pattern) where `key` is a non-literal string (`string`, a template literal
 *   type, a branded `string & …`, a type parameter constrained by one) and `obj` has a string
 *   index signature (`Record<string, T>`, `{ [k: string]: T }`, `Partial<…>`, `Readonly<…>`);
 * - `key in obj` with such a `key` and such an `obj`.
 * Keys that are string-literal unions or numbers, arrays and tuples, `Map`, `Set`, spread and
 * `Object.hasOwn` / `Object.entries` / `Object.keys` / `Object.fromEntries` are left alone. Not
 * judged either: keys typed `any` (the sources have none), `Reflect.get` / `Reflect.has`.
 *
 * The escape hatch is for the one module that implements the guard: `// names-ok: <reason>` on
 * the line before a site (or at the end of its line) allows it, and `// names-ok-file: <reason>`
 * before the first statement of a file allows every site in the file. A marker needs a reason;
 * without one the site stays flagged. Allowed sites are listed with their reasons.
 */
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** One element access or `in` that a name could reach. */
export interface Site {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** The source text of the access (shortened when long). */
  readonly expression: string;
  /** Why it is flagged. */
  readonly why: string;
  /** The marker's reason, when a marker allows it. */
  readonly allowedBecause?: string;
}

export interface Report {
  readonly flagged: readonly Site[];
  readonly allowed: readonly Site[];
}

const LINE_MARKER = /\/\/\s*names-ok:(.*)$/;
const FILE_MARKER = /^\s*\/\/\s*names-ok-file:(.*)$/;

/** What a site does with the object: read, write, compound assignment (`+=`, `??=`…)… */
function useOf(access: ts.Node): string {
  let node = access;
  while (ts.isParenthesizedExpression(node.parent) || ts.isNonNullExpression(node.parent))
    node = node.parent;
  const parent = node.parent;
  if (ts.isDeleteExpression(parent)) return 'delete';
  if ((ts.isPrefixUnaryExpression(parent) || ts.isPostfixUnaryExpression(parent)) && isStep(parent))
    return 'increment';
  if (ts.isBinaryExpression(parent) && parent.left === node) {
    const op = parent.operatorToken.kind;
    if (op === ts.SyntaxKind.EqualsToken) return 'write';
    if (op >= ts.SyntaxKind.FirstCompoundAssignment && op <= ts.SyntaxKind.LastCompoundAssignment)
      return `compound assignment (${parent.operatorToken.getText()})`;
  }
  return 'read';
}

function isStep(node: ts.PrefixUnaryExpression | ts.PostfixUnaryExpression): boolean {
  return (
    node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken
  );
}

/**
 * Whether a key of this type can be any string a user chose: `string`, a template literal or
 * `Uppercase<string>`-like type, a branded `string & {…}`, or a union holding one of those.
 * String-literal unions, numbers, symbols and enums cannot.
 */
function isOpenString(checker: ts.TypeChecker, type: ts.Type, depth = 0): boolean {
  if (depth > 8) return false;
  if (type.flags & (ts.TypeFlags.TypeParameter | ts.TypeFlags.Index | ts.TypeFlags.IndexedAccess)) {
    const constraint = checker.getBaseConstraintOfType(type);
    return constraint !== undefined && constraint !== type
      ? isOpenString(checker, constraint, depth + 1)
      : false;
  }
  if (type.isUnion()) return type.types.some((t) => isOpenString(checker, t, depth + 1));
  if (type.isIntersection()) {
    // `string & { brand }` is any string; `'a' & string` is the literal.
    const literal = type.types.some((t) => t.flags & ts.TypeFlags.StringLiteral);
    return !literal && type.types.some((t) => isOpenString(checker, t, depth + 1));
  }
  return (
    (type.flags &
      (ts.TypeFlags.String | ts.TypeFlags.TemplateLiteral | ts.TypeFlags.StringMapping)) !==
    0
  );
}

/**
 * Whether some member of the object's apparent type (without `undefined`/`null`) takes any string
 * as a key: a string (or template-literal pattern) index signature, arrays and typed arrays aside.
 */
function hasStringIndex(checker: ts.TypeChecker, type: ts.Type): boolean {
  const members = checker.getNonNullableType(type);
  const parts = members.isUnion() ? members.types : [members];
  return parts.some((part) => {
    const apparent = checker.getApparentType(part);
    if (checker.isArrayType(apparent) || checker.isTupleType(apparent)) return false;
    return checker
      .getIndexInfosOfType(apparent)
      .some((info) => isOpenString(checker, info.keyType));
  });
}

/** `Object.hasOwn(obj, key)` guards this site: it is still flagged, with a hint. */
function guardedByHasOwn(site: ts.Node, obj: ts.Node, key: ts.Expression): boolean {
  const guard = `Object.hasOwn(${obj.getText()}, ${key.getText()})`;
  for (let node: ts.Node = site; node.parent && !ts.isFunctionLike(node); node = node.parent) {
    const parent = node.parent;
    const condition =
      ts.isConditionalExpression(parent) && parent.whenTrue === node
        ? parent.condition
        : ts.isIfStatement(parent) && parent.thenStatement === node
          ? parent.expression
          : ts.isBinaryExpression(parent) &&
              parent.right === node &&
              parent.operatorToken.kind === ts.SyntaxKind.AmpersandAmpersandToken
            ? parent.left
            : undefined;
    if (condition?.getText().includes(guard)) return true;
  }
  return false;
}

function shorten(text: string): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}

/** The reason a marker gives: `''` for a marker without one, `undefined` for no marker. */
function reasonOf(match: RegExpMatchArray | null): string | undefined {
  return match ? (match[1] ?? '').trim() : undefined;
}

/** The file's `names-ok-file` reason: only among the comments before its first statement. */
function fileMarker(source: ts.SourceFile): string | undefined {
  const first = source.statements[0];
  const header = source.text.slice(0, first ? first.getStart(source) : source.text.length);
  for (const line of header.split('\n')) {
    const reason = reasonOf(line.match(FILE_MARKER));
    if (reason !== undefined) return reason;
  }
  return undefined;
}

/** The `names-ok` reason on the line before `line` (0-based) or at the end of it. */
function lineMarker(lines: readonly string[], line: number): string | undefined {
  const own = reasonOf((lines[line] ?? '').match(LINE_MARKER));
  if (own !== undefined) return own;
  const before = lines[line - 1] ?? '';
  return /^\s*\/\//.test(before) ? reasonOf(before.match(LINE_MARKER)) : undefined;
}

/** Every flagged and allowed site in the source files `include` picks out of `program`. */
export function checkProgram(
  program: ts.Program,
  include: (file: ts.SourceFile) => boolean,
  root = process.cwd(),
): Report {
  const checker = program.getTypeChecker();
  const flagged: Site[] = [];
  const allowed: Site[] = [];

  for (const source of program.getSourceFiles()) {
    if (source.isDeclarationFile || !include(source)) continue;
    const lines = source.text.split('\n');
    const wholeFile = fileMarker(source);

    const report = (site: ts.Node, obj: ts.Node, key: ts.Expression, what: string) => {
      const start = source.getLineAndCharacterOfPosition(site.getStart(source));
      const guarded = guardedByHasOwn(site, obj, key)
        ? ' (guarded by Object.hasOwn: read it through the own() helper instead)'
        : '';
      const base = {
        file: relative(root, source.fileName),
        line: start.line + 1,
        column: start.character + 1,
        expression: shorten(site.getText(source)),
      };
      const keyType = checker.typeToString(checker.getTypeAtLocation(key));
      const why = `${what} of a string-indexed object by a key of type ${keyType}${guarded}`;
      const reason = lineMarker(lines, start.line) ?? wholeFile;
      if (reason) allowed.push({ ...base, why, allowedBecause: reason });
      else if (reason === '')
        flagged.push({ ...base, why: `${why}; its names-ok marker gives no reason` });
      else flagged.push({ ...base, why });
    };

    const isHostile = (obj: ts.Expression, key: ts.Expression) =>
      isOpenString(checker, checker.getTypeAtLocation(key)) &&
      hasStringIndex(checker, checker.getTypeAtLocation(obj));

    const visit = (node: ts.Node): void => {
      if (ts.isElementAccessExpression(node)) {
        if (isHostile(node.expression, node.argumentExpression))
          report(node, node.expression, node.argumentExpression, useOf(node));
      } else if (
        ts.isBinaryExpression(node) &&
        node.operatorToken.kind === ts.SyntaxKind.InKeyword &&
        !ts.isPrivateIdentifier(node.left)
      ) {
        if (isHostile(node.right, node.left)) report(node, node.right, node.left, '`in`');
      } else if (
        ts.isBindingElement(node) &&
        node.propertyName &&
        ts.isComputedPropertyName(node.propertyName) &&
        ts.isObjectBindingPattern(node.parent)
      ) {
        const key = node.propertyName.expression;
        const owner = checker.getTypeAtLocation(node.parent);
        if (
          isOpenString(checker, checker.getTypeAtLocation(key)) &&
          hasStringIndex(checker, owner)
        ) {
          report(node, node.parent, key, 'destructuring');
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }

  const order = (a: Site, b: Site) =>
    a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column;
  return { flagged: flagged.sort(order), allowed: allowed.sort(order) };
}

/** The compiler options the packages build with (tsconfig.base.json), for in-memory checks. */
function baseOptions(): ts.CompilerOptions {
  const file = fileURLToPath(new URL('../tsconfig.base.json', import.meta.url));
  const parsed = ts.getParsedCommandLineOfConfigFile(file, {}, configHost());
  if (!parsed) throw new Error(`cannot read ${file}`);
  const { composite: _c, declaration: _d, emitDeclarationOnly: _e, ...options } = parsed.options;
  return { ...options, noEmit: true, types: [] };
}

function configHost(): ts.ParseConfigFileHost {
  return {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  };
}

/** Parsed files by path and language version, shared by programs. */
type ParseCache = Map<string, ts.SourceFile | undefined>;

/** The libs, parsed once for every in-memory check of this process. */
const libraries: ParseCache = new Map();

/**
 * A compiler host that takes parsed files from `cache` (parsing a file once for all the
 * programs that share it) and parses no JSDoc: in .ts and .d.ts files types never come from
 * comments, and aws-cdk-lib's comments are most of its text.
 */
function cachingHost(options: ts.CompilerOptions, cache: ParseCache): ts.CompilerHost {
  const host = ts.createCompilerHost(options);
  host.jsDocParsingMode = ts.JSDocParsingMode.ParseNone;
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (file, version, ...rest) => {
    const { languageVersion, impliedNodeFormat } =
      typeof version === 'object' ? version : { languageVersion: version, impliedNodeFormat: 0 };
    const key = `${file}\0${languageVersion}\0${impliedNodeFormat ?? 0}`;
    if (!cache.has(key)) cache.set(key, getSourceFile(file, version, ...rest));
    return cache.get(key);
  };
  return host;
}

/**
 * Checks in-memory modules (name → source text) with the packages' compiler options: for tests.
 * Names are paths relative to a virtual directory; every one of them is scanned.
 */
export function checkSources(sources: Readonly<Record<string, string>>): Report {
  const dir = resolve('/virtual-names-check');
  const files = new Map(Object.entries(sources).map(([name, text]) => [join(dir, name), text]));
  const options = baseOptions();
  const host = cachingHost(options, libraries);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, ...rest) => {
    const text = files.get(resolve(name));
    return text === undefined
      ? getSourceFile(name, version, ...rest)
      : ts.createSourceFile(name, text, version, true);
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => files.has(resolve(name)) || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => files.get(resolve(name)) ?? readFile(name);
  const program = ts.createProgram({ rootNames: [...files.keys()], options, host });
  return checkProgram(program, (file) => files.has(resolve(file.fileName)), dir);
}

/** A package: its `src` folder and its tsconfig, read. */
interface Package {
  readonly src: string;
  readonly config: ts.ParsedCommandLine;
}

/**
 * The packages of the repository at `root`: the folders of `packages/` with a tsconfig, and the
 * two at the top level, `lambdas/` (the handlers) and `lib/` (the construct).
 */
function packagesOf(root: string): Package[] {
  const packages = join(root, 'packages');
  return [
    ...readdirSync(packages)
      .sort()
      .map((name) => join(packages, name)),
    join(root, 'lambdas'),
    join(root, 'lib'),
  ]
    .filter((dir) => ts.sys.fileExists(join(dir, 'tsconfig.json')))
    .map((dir) => {
      const file = join(dir, 'tsconfig.json');
      const config = ts.getParsedCommandLineOfConfigFile(file, {}, configHost());
      if (!config) throw new Error(`cannot read ${file}`);
      return { src: join(dir, 'src'), config };
    });
}

/** Options that say only where a package's outputs go: they change no type. */
const OUTPUT_OPTIONS = new Set(['outDir', 'rootDir', 'tsBuildInfoFile', 'configFilePath']);

/** Packages whose options differ only in {@link OUTPUT_OPTIONS} type-check alike. */
function typingOf(options: ts.CompilerOptions): string {
  const typing = Object.entries(options).filter(([name]) => !OUTPUT_OPTIONS.has(name));
  return JSON.stringify(typing.sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Checks `packages/*\/src/**\/*.ts` of the repository at `root` with each package's own tsconfig
 * (its libs and types). Packages that type-check alike share one program, and every program
 * shares the files already parsed (the libs, the sibling packages).
 */
export function checkRepository(root: string): Report {
  const groups = new Map<string, Package[]>();
  for (const pkg of packagesOf(root)) {
    const key = typingOf(pkg.config.options);
    groups.set(key, [...(groups.get(key) ?? []), pkg]);
  }
  const parsed: ParseCache = new Map();
  const reports = [...groups.values()].map((group) => {
    const options = { ...group[0]?.config.options, noEmit: true };
    const host = cachingHost(options, parsed);
    const rootNames = group.flatMap((pkg) => pkg.config.fileNames);
    // Without project references, imports of sibling packages resolve to their sources (the
    // `sluice-source` condition): the types checked are the ones in this tree, never a build.
    const program = ts.createProgram({ rootNames, options, host });
    const roots = new Set(rootNames.map((f) => resolve(f)));
    const inSrc = (file: ts.SourceFile) =>
      roots.has(resolve(file.fileName)) &&
      group.some((pkg) => !relative(pkg.src, file.fileName).startsWith('..'));
    return checkProgram(program, inSrc, root);
  });
  const order = (a: Site, b: Site) =>
    a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column;
  return {
    flagged: reports.flatMap((r) => r.flagged).sort(order),
    allowed: reports.flatMap((r) => r.allowed).sort(order),
  };
}

/** The report as the lint step prints it. */
export function formatReport(report: Report): string {
  const line = (site: Site, why: string) =>
    `${site.file}:${site.line}:${site.column}  ${site.expression}  — ${why}`;
  const out: string[] = [];
  for (const site of report.allowed)
    out.push(line(site, `allowed (names-ok: ${site.allowedBecause ?? ''})`));
  for (const site of report.flagged) out.push(line(site, site.why));
  out.push(
    report.flagged.length === 0
      ? `check-names: no user-chosen name keys a plain object (${report.allowed.length} allowed)`
      : `check-names: ${report.flagged.length} site(s) index a string-keyed plain object with a non-literal string; use a Map, or read through Object.hasOwn (the own() helper)`,
  );
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  const report = checkRepository(root);
  const text = formatReport(report);
  if (report.flagged.length > 0) {
    console.error(text);
    process.exitCode = 1;
  } else console.log(text);
}
