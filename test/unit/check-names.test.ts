/**
 * The lint step that keeps user-chosen names off plain objects (scripts/check-names.ts), run on
 * small modules in memory: what it flags, what it leaves alone, and its escape hatch.
 */
import { describe, expect, it } from 'vitest';
import { checkSources, formatReport, type Report } from '../../scripts/check-names.js';

/** The flagged and allowed sites of one module, as `line expression`. */
function check(source: string): { flagged: string[]; allowed: string[] } {
  const report: Report = checkSources({ 'snippet.ts': source });
  const show = (site: Report['flagged'][number]) => `${site.line} ${site.expression}`;
  return { flagged: report.flagged.map(show), allowed: report.allowed.map(show) };
}

const clean = { flagged: [], allowed: [] };

describe('check-names', () => {
  it('flags a Record<string, number> indexed by a string variable, read or written', () => {
    const found = check(`
      export function count(counts: Record<string, number>, name: string): number {
        counts[name] = (counts[name] ?? 0) + 1;
        return counts[name] ?? 0;
      }
    `);

    expect(found).toEqual({
      flagged: ['3 counts[name]', '3 counts[name]', '4 counts[name]'],
      allowed: [],
    });
  });

  it('flags compound assignment, ??=, ++ and delete, and says which it is', () => {
    const report = checkSources({
      'snippet.ts': `
        export function touch(totals: { [metric: string]: number }, metric: string): void {
          totals[metric] += 1;
          totals[metric] ??= 0;
          totals[metric]++;
          delete totals[metric];
        }
      `,
    });

    expect(report.flagged.map((s) => s.why.split(' of ')[0])).toEqual([
      'compound assignment (+=)',
      'compound assignment (??=)',
      'increment',
      'delete',
    ]);
  });

  it('flags the wrappers that keep the index signature: Readonly, Partial, optional, a type parameter', () => {
    const found = check(`
      export function read<K extends string>(
        a: Readonly<Record<string, number>>,
        b: Partial<Record<string, number>> | undefined,
        c: Record<string, number>,
        key: K,
        name: \`m_\${string}\`,
      ) {
        return [a[key], b?.[key], c[name]];
      }
    `);

    expect(found.flagged).toEqual(['9 a[key]', '9 b?.[key]', '9 c[name]']);
  });

  it('flags `in` with a string key on a string-indexed object', () => {
    const found = check(`
      export const has = (usage: Record<string, number>, metric: string) => metric in usage;
    `);

    expect(found).toEqual({ flagged: ['2 metric in usage'], allowed: [] });
  });

  it('flags a computed key in a destructuring pattern', () => {
    const found = check(`
      export function pick(limits: Record<string, number>, name: string) {
        const { [name]: limit } = limits;
        return limit;
      }
    `);

    expect(found.flagged).toEqual(['3 [name]: limit']);
  });

  it('leaves alone a string-literal key, a union of literals, and Record<Code, number>', () => {
    const found = check(`
      type Code = 'rate_limited' | 'exceeds_capacity';
      export function read(
        counts: Record<string, number>,
        byCode: Record<Code, number>,
        which: 'a' | 'b',
        code: Code,
      ) {
        return [counts.a, counts['b'], counts[which], byCode[code], 'a' in counts, which in counts];
      }
    `);

    expect(found).toEqual(clean);
  });

  it('leaves alone a Map, a Set, an array or tuple by number, and a string-keyed object read by index', () => {
    const found = check(`
      export function read(
        counts: Map<string, number>,
        seen: Set<string>,
        list: string[],
        pair: [string, number],
        bytes: Uint8Array,
        i: number,
        name: string,
      ) {
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return [counts.get(name), seen.has(name), list[i], pair[0], bytes[i], name[i]];
      }
    `);

    expect(found).toEqual(clean);
  });

  it('leaves alone Object.hasOwn, hasOwnProperty.call, Object.entries/keys/values/fromEntries and spread', () => {
    const found = check(`
      export function copy(usage: Record<string, number>, metric: string) {
        const own = Object.hasOwn(usage, metric);
        const old = Object.prototype.hasOwnProperty.call(usage, metric);
        const pairs = Object.entries(usage).map(([k, v]) => [k, v * 2] as const);
        return [own, old, Object.keys(usage), Object.values(usage), Object.fromEntries(pairs), { ...usage }];
      }
    `);

    expect(found).toEqual(clean);
  });

  it('allows a site under a `names-ok` marker with a reason, and lists it with the reason', () => {
    const report = checkSources({
      'own.ts': `
        export function own<T>(obj: Readonly<Record<string, T>>, key: string): T | undefined {
          // names-ok: the guard itself: reads only an own property
          return Object.hasOwn(obj, key) ? obj[key] : undefined;
        }
      `,
    });

    expect(report.flagged).toEqual([]);
    expect(report.allowed).toEqual([
      expect.objectContaining({
        file: 'own.ts',
        line: 4,
        expression: 'obj[key]',
        allowedBecause: 'the guard itself: reads only an own property',
      }),
    ]);
    expect(formatReport(report)).toContain(
      'own.ts:4:44  obj[key]  — allowed (names-ok: the guard itself: reads only an own property)',
    );
  });

  it('allows every site of a file with a `names-ok-file` marker and a reason', () => {
    const found = check(`// names-ok-file: the own() helper module
      export const own = (obj: Record<string, number>, key: string) =>
        Object.hasOwn(obj, key) ? obj[key] : undefined;
      export const set = (obj: Record<string, number>, key: string, v: number) => { obj[key] = v; };
    `);

    expect(found).toEqual({ flagged: [], allowed: ['3 obj[key]', '4 obj[key]'] });
  });

  it('still flags a site whose marker gives no reason, and says so', () => {
    const report = checkSources({
      'snippet.ts': `
        export function read(obj: Record<string, number>, key: string) {
          // names-ok:
          const a = obj[key];
          const b = obj[key]; // names-ok:   
          return [a, b];
        }
      `,
    });

    expect(report.allowed).toEqual([]);
    expect(report.flagged.map((s) => [s.line, s.why.endsWith('gives no reason')])).toEqual([
      [4, true],
      [5, true],
    ]);
  });

  it('does not carry a marker past the line right after it', () => {
    const found = check(`
      export function read(obj: Record<string, number>, key: string) {
        // names-ok: only the next line
        const a = obj[key];
        const b = obj[key];
        return [a, b];
      }
    `);

    expect(found).toEqual({ flagged: ['5 obj[key]'], allowed: ['4 obj[key]'] });
  });

  it('prints file:line:col, the expression and why; fails only when something is flagged', () => {
    const report = checkSources({
      'counts.ts': 'export const bump = (c: Record<string, number>, k: string) => c[k];\n',
    });

    expect(formatReport(report).split('\n')[0]).toBe(
      'counts.ts:1:63  c[k]  — read of a string-indexed object by a key of type string',
    );
    expect(report.flagged).toHaveLength(1);
  });
});
