/** The soak's report: one row per check, then what lies behind each, then the run's figures. */
import type { SoakReport } from './harness.js';

const WIDTH = { name: 32, expected: 60, observed: 90 } as const;

/** Cuts text to `width` characters, or pads it to them. */
function cell(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width);
}

/** The table, the details of each check, and the summary, as lines of text. */
export function renderReport(report: SoakReport): string {
  const line = (a: string, b: string, c: string, d: string) =>
    `| ${cell(a, WIDTH.name)} | ${cell(b, WIDTH.expected)} | ${cell(c, WIDTH.observed)} | ${d.padEnd(4)} |`;
  const rule = `|${'-'.repeat(WIDTH.name + 2)}|${'-'.repeat(WIDTH.expected + 2)}|${'-'.repeat(WIDTH.observed + 2)}|------|`;
  const out = [
    line('check', 'expected', 'observed', ''),
    rule,
    ...report.rows.map((r) => line(r.name, r.expected, r.observed, r.pass ? 'pass' : 'FAIL')),
    '',
  ];
  for (const row of report.rows) {
    out.push(`${row.pass ? 'pass' : 'FAIL'} ${row.name}`);
    out.push(`  expected: ${row.expected}`);
    out.push(`  observed: ${row.observed}`);
    for (const detail of row.details) out.push(`  - ${detail}`);
  }
  out.push('', ...report.summary);
  out.push(
    '',
    report.ok ? 'every check passed' : `${report.rows.filter((r) => !r.pass).length} checks failed`,
  );
  return out.join('\n');
}
