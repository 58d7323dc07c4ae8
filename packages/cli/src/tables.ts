/** Plain-text tables for the usage commands; costs in USD. */
import type { TopEntities, UsageHistory } from '@sluice/client';
import { own } from '@sluice/core/internal';

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = head.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^[-$\d.,]*$/.test(r[i] ?? '')),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/** Micro-USD as dollars: `$12.345678`. */
export const usd = (micro: number | undefined): string => `$${((micro ?? 0) / 1e6).toFixed(6)}`;

const n = (value: number | undefined) => (value ?? 0).toLocaleString('en-US');

const deniedText = (denied: Readonly<Record<string, number>>) =>
  Object.entries(denied)
    .map(([name, count]) => `${name}=${count}`)
    .join(' ');

/** `sluice usage`: one row per period (and resource). */
export function usageTable(history: UsageHistory): string[] {
  if (history.items.length === 0) return [`(no usage recorded for ${history.entity})`];
  return table(
    ['period', 'resource', 'requests', 'input', 'output', 'tokens', 'cost', 'leases', 'denied'],
    history.items.map((i) => [
      i.periodStart,
      i.resource,
      n(i.usage.requests),
      n(i.usage.input_tokens),
      n(i.usage.output_tokens),
      n(i.usage.tokens),
      usd(i.usage.cost_micro_usd),
      n(i.leases),
      deniedText(i.denied),
    ]),
  );
}

/** `sluice top`: the entities ranked, with their totals. */
export function topTable(top: TopEntities): string[] {
  if (top.items.length === 0) return [`(nothing recorded for ${top.period} ${top.date})`];
  const ranked = top.by === 'denied' ? 'denied' : top.metric;
  // A metric not among the usual columns gets one of its own.
  const extra = !['requests', 'tokens', 'cost_micro_usd', 'denied'].includes(ranked);
  return [
    `Top entities by ${ranked === 'cost_micro_usd' ? 'cost' : ranked}, ${top.period} ${top.date}:`,
    ...table(
      ['#', 'entity', ...(extra ? [ranked] : []), 'requests', 'tokens', 'cost', 'leases', 'denied'],
      top.items.map((e, i) => [
        String(i + 1),
        e.entity,
        ...(extra ? [n(own(e.usage, ranked))] : []),
        n(e.usage.requests),
        n(e.usage.tokens),
        usd(e.usage.cost_micro_usd),
        n(e.leases),
        n(e.denied),
      ]),
    ),
    ...(top.exact
      ? []
      : [
          `(approximate: more entities than the boards hold; a figure may be off by, and an entity not listed may have, up to ${n(top.errorBound)})`,
        ]),
  ];
}
