/**
 * The limits of a plan, an entity or a resource as rows of a form. A row keeps whatever the form
 * does not show (`alerts`, `mode`, `shards`…) as it was stored, so saving never drops it.
 */
import { type ComponentChildren, h } from 'preact';
import { type Control, field } from './ui.js';
import type { Limit } from './wire.js';

/** One limit as the form holds it: text as typed, and the fields the form does not show. */
export interface LimitRow {
  readonly name: string;
  readonly metric: string;
  readonly limit: string;
  readonly kind: 'per' | 'window';
  readonly span: string;
  readonly burst: string;
  readonly resource: string;
  readonly rest: Readonly<Record<string, unknown>>;
}

export const emptyRow = (): LimitRow => ({
  name: '',
  metric: 'tokens',
  limit: '',
  kind: 'per',
  span: 'minute',
  burst: '',
  resource: '',
  rest: {},
});

export function rowOf(limit: Limit): LimitRow {
  const { name, metric, limit: value, per, window, burst, resource, ...rest } = limit;
  return {
    name,
    metric,
    limit: String(value),
    kind: window === undefined ? 'per' : 'window',
    span: String(window ?? per ?? ''),
    burst: burst === undefined ? '' : String(burst),
    resource: resource ?? '',
    rest,
  };
}

/** A number as typed, or the text itself when it is none: the API names what is wrong. */
export const numberOr = (text: string): number | string =>
  /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text;

export function limitOf(row: LimitRow): Record<string, unknown> {
  const span = row.kind === 'per' ? { per: numberOr(row.span) } : { window: row.span };
  return {
    ...row.rest,
    name: row.name,
    metric: row.metric,
    limit: numberOr(row.limit),
    ...span,
    ...(row.burst && row.kind === 'per' ? { burst: numberOr(row.burst) } : {}),
    ...(row.resource ? { resource: row.resource } : {}),
  };
}

const text = (
  value: string,
  set: (v: string) => void,
  props: Record<string, unknown> = {},
): Control => ({
  tag: 'input',
  props: {
    type: 'text',
    value,
    onInput: (e: Event) => set((e.target as HTMLInputElement).value),
    ...props,
  },
});

function rowFields(
  row: LimitRow,
  at: string,
  set: (row: LimitRow) => void,
  errors: ReadonlyMap<string, string>,
  withResource: boolean,
): ComponentChildren[] {
  const put = (key: keyof LimitRow) => (value: string) => set({ ...row, [key]: value });
  const spans = row.kind === 'per' ? ['second', 'minute', 'hour', 'day'] : ['day', 'week', 'month'];
  return [
    field('Name', `${at}.name`, text(row.name, put('name'), { required: true }), errors),
    field('Metric', `${at}.metric`, text(row.metric, put('metric'), { list: 'metrics' }), errors),
    field('Limit', `${at}.limit`, text(row.limit, put('limit'), { inputMode: 'numeric' }), errors),
    field(
      'Kind',
      `${at}.kind`,
      {
        tag: 'select',
        props: {
          value: row.kind,
          onChange: (e: Event) => {
            const kind = (e.target as HTMLSelectElement).value as LimitRow['kind'];
            set({ ...row, kind, span: kind === 'per' ? 'minute' : 'day' });
          },
        },
        children: [
          h('option', { value: 'per' }, 'rolling (per)'),
          h('option', { value: 'window' }, 'calendar (window)'),
        ],
      },
      errors,
    ),
    field(
      row.kind === 'per' ? 'Per' : 'Window',
      `${at}.${row.kind}`,
      text(row.span, put('span'), { list: `spans-${row.kind}`, 'data-spans': spans.join(',') }),
      errors,
    ),
    row.kind === 'per'
      ? field(
          'Burst',
          `${at}.burst`,
          text(row.burst, put('burst'), { inputMode: 'numeric' }),
          errors,
        )
      : h('span', null),
    withResource
      ? field(
          'Resource',
          `${at}.resource`,
          text(row.resource, put('resource'), { placeholder: 'all' }),
          errors,
        )
      : h('span', null),
  ];
}

/** The limits as a fieldset of rows, with add and remove buttons. */
export function LimitsFields(props: {
  rows: readonly LimitRow[];
  setRows: (rows: LimitRow[]) => void;
  errors: ReadonlyMap<string, string>;
  withResource: boolean;
}): ComponentChildren {
  const { rows, setRows, errors } = props;
  const replace = (i: number) => (row: LimitRow) =>
    setRows(rows.map((r, j) => (j === i ? row : r)));
  return h(
    'fieldset',
    { class: 'limits' },
    h('legend', null, 'Limits'),
    errors.get('limits')
      ? h('p', { class: 'field-error', role: 'alert' }, errors.get('limits'))
      : null,
    h(
      'datalist',
      { id: 'metrics' },
      ...['tokens', 'requests', 'cost_micro_usd', 'input_tokens', 'output_tokens'].map((m) =>
        h('option', { value: m }),
      ),
    ),
    h(
      'datalist',
      { id: 'spans-per' },
      ...['second', 'minute', 'hour', 'day'].map((m) => h('option', { value: m })),
    ),
    h(
      'datalist',
      { id: 'spans-window' },
      ...['day', 'week', 'month'].map((m) => h('option', { value: m })),
    ),
    ...rows.map((row, i) =>
      h(
        'div',
        { class: 'limit-row', role: 'group', 'aria-label': `Limit ${i + 1}` },
        ...rowFields(row, `limits[${i}]`, replace(i), errors, props.withResource),
        h(
          'button',
          {
            type: 'button',
            class: 'remove',
            onClick: () => setRows(rows.filter((_, j) => j !== i)),
          },
          `Remove limit ${i + 1}`,
        ),
      ),
    ),
    h('button', { type: 'button', onClick: () => setRows([...rows, emptyRow()]) }, 'Add a limit'),
  );
}
