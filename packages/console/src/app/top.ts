/** Top: the entities that used (or were refused) most in a day or month, linking to each. */
import { type ComponentChildren, h } from 'preact';
import { useState } from 'preact/hooks';
import { get, query } from './api.js';
import { count, own, todayUtc, withUnit } from './format.js';
import { entityHref, link, section, table, useLoad, whenLoaded } from './ui.js';
import type { TopAnswer } from './wire.js';

const RANKINGS = [
  { value: 'tokens', label: 'tokens' },
  { value: 'cost_micro_usd', label: 'cost' },
  { value: 'requests', label: 'requests' },
  { value: 'denied', label: 'refusals' },
] as const;

type Ranking = (typeof RANKINGS)[number]['value'];

function select<T extends string>(
  id: string,
  label: string,
  value: T,
  options: readonly { value: T; label: string }[],
  set: (value: T) => void,
) {
  return [
    h('label', { for: id }, label),
    h(
      'select',
      { id, value, onChange: (e: Event) => set((e.target as HTMLSelectElement).value as T) },
      ...options.map((o) => h('option', { value: o.value }, o.label)),
    ),
  ];
}

export function TopView(): ComponentChildren {
  const [ranking, setRanking] = useState<Ranking>('tokens');
  const [period, setPeriod] = useState<'day' | 'month'>('day');
  const [date, setDate] = useState(todayUtc());
  const [loaded] = useLoad(() => {
    const by = ranking === 'denied' ? { by: 'denied' } : { metric: ranking };
    return get<TopAnswer>(`/v1/admin/usage/top${query({ period, date, limit: '25', ...by })}`);
  }, [ranking, period, date]);
  const metric = ranking === 'denied' ? 'tokens' : ranking;
  return section(
    'Top entities',
    h(
      'form',
      { class: 'toolbar', onSubmit: (e: Event) => e.preventDefault() },
      ...select('top-by', 'By', ranking, RANKINGS, setRanking),
      ...select(
        'top-period',
        'Period',
        period,
        [
          { value: 'day', label: 'day' },
          { value: 'month', label: 'month' },
        ],
        setPeriod,
      ),
      // Each entity counts on the board of its own day, in its time zone.
      h('label', { for: 'top-date' }, 'Date (each entity’s own day)'),
      h('input', {
        id: 'top-date',
        type: 'date',
        value: date,
        onChange: (e: Event) => setDate((e.target as HTMLInputElement).value || todayUtc()),
      }),
    ),
    whenLoaded(loaded, (answer) => [
      table(
        'Top entities',
        ['#', 'Entity', ranking === 'denied' ? 'Refusals' : 'Used', 'Calls admitted', 'Refusals'],
        answer.items.map((item, i) => [
          String(i + 1),
          link(entityHref(item.entity), item.entity),
          ranking === 'denied'
            ? count(item.denied)
            : withUnit(metric, own(item.usage, metric) ?? 0),
          count(item.leases),
          count(item.denied),
        ]),
        'Nobody in this period.',
        'top',
      ),
      answer.exact
        ? null
        : h(
            'p',
            { class: 'muted' },
            `Approximate: figures may be off by up to ${withUnit(metric, answer.error_bound)}.`,
          ),
    ]),
  );
}
