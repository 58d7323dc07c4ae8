/** Markdown tables as the bench's documents and the README's capacity section write them. */

export type Align = 'left' | 'right';

/**
 * A Markdown table, its columns padded so that the file reads as a table too (and as the
 * linter's formatter writes it: the check of the README and docs/ leaves it as it is).
 */
export function table(head: readonly string[], align: readonly Align[], rows: readonly string[][]) {
  const widths = head.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (text: string, i: number) =>
    align[i] === 'right' ? text.padStart(widths[i] ?? 0) : text.padEnd(widths[i] ?? 0);
  const line = (cells: readonly string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const rule = widths.map((w, i) =>
    align[i] === 'right' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w),
  );
  return [line(head), `| ${rule.join(' | ')} |`, ...rows.map(line)].join('\n');
}
