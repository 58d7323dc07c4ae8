/**
 * A line chart of series over time (uPlot on a canvas), and the same figures as a table beside
 * it: the table is what screen readers and keyboards read, and where the exact figures are.
 */
import { type ComponentChildren, h } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { periodLabel, withUnit } from './format.js';
import { table } from './ui.js';

/** One line: its name, the metric its figures are in, and a value per period. */
export interface Series {
  readonly label: string;
  readonly metric: string;
  readonly values: readonly number[];
}

export interface ChartProps {
  readonly title: string;
  /** The periods' starts (ISO 8601), oldest first. */
  readonly periods: readonly string[];
  readonly granularity: string;
  readonly zone: string;
  readonly series: readonly Series[];
  readonly testId?: string;
}

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#be185d'];

/** A period's length in seconds, to give a single period room on its axis. */
const STEP: Readonly<Record<string, number>> = { hour: 3_600, day: 86_400, month: 2_678_400 };

function options(props: ChartProps, width: number, xs: readonly number[]): uPlot.Options {
  const step =
    props.granularity === 'day' ? STEP.day : props.granularity === 'month' ? STEP.month : STEP.hour;
  const pad = step ?? 3_600;
  return {
    width,
    height: 220,
    legend: { show: true },
    // Axis labels in the entity's zone, not the browser's.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), props.zone),
    // The periods shown, and half a period either side (one period alone is not a range).
    scales: { x: { time: true, range: [(xs[0] ?? 0) - pad / 2, (xs.at(-1) ?? 0) + pad / 2] } },
    axes: [{}, { size: 70 }],
    series: [
      {
        label: 'period',
        value: (_u, v) =>
          v == null
            ? ''
            : periodLabel(new Date(v * 1000).toISOString(), props.granularity, props.zone),
      },
      ...props.series.map((s, i) => ({
        label: s.label,
        stroke: COLORS[i % COLORS.length] as string,
        width: 2,
        points: { show: true },
        value: (_u: uPlot, v: number | null) => (v == null ? '' : withUnit(s.metric, v)),
      })),
    ],
  };
}

/** The chart: drawn once its element is in the page, drawn again when its figures change. */
export function Chart(props: ChartProps): ComponentChildren {
  const holder = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = holder.current;
    if (!element || props.periods.length === 0) return;
    const xs = props.periods.map((p) => Date.parse(p) / 1000);
    const data: uPlot.AlignedData = [xs, ...props.series.map((s) => [...s.values])];
    const width = Math.max(280, element.clientWidth || 600);
    const plot = new uPlot(options(props, width, xs), data, element);
    const resize = () => plot.setSize({ width: Math.max(280, element.clientWidth), height: 220 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [props]);
  if (props.periods.length === 0) return h('p', { class: 'muted' }, 'No usage in this range yet.');
  const rows = props.periods.map((p, i) => [
    periodLabel(p, props.granularity, props.zone),
    ...props.series.map((s) => withUnit(s.metric, s.values[i] ?? 0)),
  ]);
  return h(
    'figure',
    { class: 'chart' },
    h('div', { ref: holder, role: 'img', 'aria-label': `${props.title}: chart` }),
    h(
      'details',
      null,
      h('summary', null, `${props.title} as a table`),
      table(
        props.title,
        ['Period', ...props.series.map((s) => s.label)],
        rows,
        undefined,
        props.testId,
      ),
    ),
  );
}
