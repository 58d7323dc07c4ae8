/**
 * An entity's usage history (`GET /v1/usage`): tokens, cost and calls per hour, day or month of
 * its own time zone, for one resource or all, and its refusals by limit over the same range.
 */
import { type ComponentChildren, h } from 'preact';
import { useState } from 'preact/hooks';
import { get, query } from './api.js';
import { Chart } from './chart.js';
import type { EntityFacts } from './entity.js';
import { count, own } from './format.js';
import { decisionSeries } from './overview.js';
import { section, table, useLoad, whenLoaded } from './ui.js';
import type { UsageAnswer, UsagePeriod } from './wire.js';

const GRANULARITIES = ['hour', 'day', 'month'] as const;
const RANGE = { hour: 'the last day', day: 'the last 31 days', month: 'the last year' };

type Granularity = (typeof GRANULARITIES)[number];

const metric = (items: readonly UsagePeriod[], name: string) =>
  items.map((item) => own(item.usage, name) ?? 0);

/** Refusals by limit over the whole range, most first. */
export function refusalsByLimit(items: readonly UsagePeriod[]): [string, number][] {
  const totals = new Map<string, number>();
  for (const item of items)
    for (const [name, n] of Object.entries(item.denied))
      totals.set(name, (totals.get(name) ?? 0) + n);
  return [...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function Controls(props: {
  granularity: Granularity;
  setGranularity: (g: Granularity) => void;
  which: string;
  setWhich: (w: string) => void;
  resource: string | undefined;
}): ComponentChildren {
  return h(
    'div',
    { class: 'toolbar' },
    h('label', { for: 'granularity' }, 'By'),
    h(
      'select',
      {
        id: 'granularity',
        value: props.granularity,
        onChange: (e: Event) =>
          props.setGranularity((e.target as HTMLSelectElement).value as Granularity),
      },
      ...GRANULARITIES.map((g) => h('option', { value: g }, g)),
    ),
    h('label', { for: 'usage-resource' }, 'Of'),
    h(
      'select',
      {
        id: 'usage-resource',
        value: props.which,
        onChange: (e: Event) => props.setWhich((e.target as HTMLSelectElement).value),
      },
      h('option', { value: '*' }, 'all resources'),
      props.resource ? h('option', { value: props.resource }, props.resource) : null,
    ),
  );
}

interface Common {
  readonly periods: readonly string[];
  readonly granularity: string;
  readonly zone: string;
}

/** The tokens chart and the cost chart of a range. */
function usageCharts(items: readonly UsagePeriod[], common: Common, title: string) {
  return [
    h(Chart, {
      ...common,
      title: `Tokens — ${title}`,
      testId: 'usage-tokens',
      series: [
        { label: 'tokens', metric: 'tokens', values: metric(items, 'tokens') },
        { label: 'input', metric: 'input_tokens', values: metric(items, 'input_tokens') },
        { label: 'output', metric: 'output_tokens', values: metric(items, 'output_tokens') },
      ],
    }),
    h(Chart, {
      ...common,
      title: `Cost — ${title}`,
      testId: 'usage-cost',
      series: [
        { label: 'cost', metric: 'cost_micro_usd', values: metric(items, 'cost_micro_usd') },
      ],
    }),
  ];
}

export function UsageCard({
  facts,
  resource,
}: {
  facts: EntityFacts;
  resource: string | undefined;
}) {
  const [granularity, setGranularity] = useState<Granularity>('hour');
  const [which, setWhich] = useState('*');
  const shown = which === '*' || which === resource ? which : '*';
  const [loaded] = useLoad(
    () =>
      get<UsageAnswer>(
        `/v1/usage${query({ entity: facts.name, granularity, resource: shown === '*' ? undefined : shown })}`,
      ),
    [facts.name, granularity, shown],
  );
  const title = `${shown === '*' ? 'All resources' : shown}, by ${granularity} over ${RANGE[granularity]}`;
  return h(
    'div',
    { class: 'grid' },
    section(
      'Usage',
      h(Controls, { granularity, setGranularity, which: shown, setWhich, resource }),
      whenLoaded(loaded, (answer) => {
        const periods = answer.items.map((item) => item.period_start);
        const common = { periods, granularity, zone: facts.zone };
        return usageCharts(answer.items, common, title);
      }),
    ),
    section(
      'Calls and refusals',
      whenLoaded(loaded, (answer) => [
        h(Chart, {
          periods: answer.items.map((item) => item.period_start),
          granularity,
          zone: facts.zone,
          title: `Calls — ${title}`,
          series: decisionSeries(answer.items),
        }),
        h('h3', null, 'Refusals by limit'),
        table(
          'Refusals by limit',
          ['Limit', 'Refusals'],
          refusalsByLimit(answer.items).map(([name, n]) => [name, count(n)]),
          'No refusals in this range.',
          'refusals',
        ),
      ]),
    ),
  );
}
