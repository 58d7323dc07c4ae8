/**
 * The console's small parts: headings, tables, bars, notes and the hook that loads an answer.
 * Everything renders text as text (preact escapes it): no API value ever becomes markup.
 */
import { type ComponentChildren, h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.js';
import { count, withUnit } from './format.js';

/** What a load is doing: waiting, failed (its message), or done. */
export type Loaded<T> =
  | { readonly state: 'loading' }
  | { readonly state: 'failed'; readonly error: string; readonly forbidden: boolean }
  | { readonly state: 'done'; readonly value: T };

/** Loads `load()` again whenever one of `deps` changes; `reload` loads it again now. */
export function useLoad<T>(
  load: () => Promise<T>,
  deps: readonly unknown[],
): [Loaded<T>, () => void] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (value) => live && setLoaded({ state: 'done', value }),
      (error: unknown) =>
        live &&
        setLoaded({
          state: 'failed',
          error: error instanceof Error ? error.message : String(error),
          forbidden: error instanceof ApiError && error.forbidden,
        }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [loaded, () => setTick((t) => t + 1)];
}

/** The content of a load: a note while loading or failed, else `render(value)`. */
export function whenLoaded<T>(loaded: Loaded<T>, render: (value: T) => ComponentChildren) {
  if (loaded.state === 'loading') return h('p', { class: 'muted', role: 'status' }, 'Loading…');
  if (loaded.state === 'failed')
    return h(
      'p',
      { class: loaded.forbidden ? 'note forbidden' : 'note error', role: 'alert' },
      loaded.error,
    );
  return render(loaded.value);
}

/** A section with a heading. */
export const section = (title: string, ...children: ComponentChildren[]): ComponentChildren =>
  h('section', { class: 'card', 'aria-label': title }, h('h2', null, title), ...children);

/** A link to a view of the console. */
export const link = (
  href: string,
  text: string,
  props: Record<string, string> = {},
): ComponentChildren => h('a', { href, ...props }, text);

/** The console's address of an entity's view. */
export const entityHref = (entity: string): string => `#/entity/${encodeURIComponent(entity)}`;

/** A table; `rows` are cells. An empty table says `empty` instead. */
export function table(
  label: string,
  headers: readonly string[],
  rows: readonly (readonly ComponentChildren[])[],
  empty = 'Nothing yet.',
  testId?: string,
): ComponentChildren {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'div',
    { class: 'scroll', role: 'region', 'aria-label': label, tabIndex: 0 },
    h(
      'table',
      testId ? { 'data-testid': testId } : null,
      h('caption', { class: 'visually-hidden' }, label),
      h('thead', null, h('tr', null, ...headers.map((name) => h('th', { scope: 'col' }, name)))),
      h(
        'tbody',
        null,
        ...rows.map((cells) => h('tr', null, ...cells.map((c) => h('td', null, c)))),
      ),
    ),
  );
}

/**
 * A bar of what is left of a limit: its share of the limit, and the figures as text beside it
 * (a limit in debt shows an empty bar and its negative remainder).
 */
export function headroomBar(label: string, metric: string, limit: number, remaining: number) {
  const share = limit > 0 ? Math.max(0, Math.min(1, remaining / limit)) : 0;
  const level = share < 0.1 ? 'low' : share < 0.3 ? 'mid' : 'high';
  return h(
    'div',
    { class: 'bar-row' },
    h(
      'div',
      {
        class: 'bar',
        role: 'meter',
        'aria-label': `${label}: remaining`,
        'aria-valuemin': 0,
        'aria-valuemax': limit,
        'aria-valuenow': Math.max(0, remaining),
        'aria-valuetext': `${withUnit(metric, remaining)} of ${withUnit(metric, limit)}`,
      },
      h('div', { class: `fill ${level}`, style: { width: `${(share * 100).toFixed(1)}%` } }),
    ),
    h(
      'span',
      { class: 'bar-text' },
      `${withUnit(metric, remaining)} left of ${withUnit(metric, limit)} (${count(share * 100)}%)`,
    ),
  );
}

/** A control of a form: its tag, its attributes and its children (a select's options). */
export interface Control {
  readonly tag: 'input' | 'select';
  readonly props: Readonly<Record<string, unknown>>;
  readonly children?: readonly ComponentChildren[];
}

/** A labelled form control, with the server's message for its field beside it. */
export function field(
  label: string,
  name: string,
  control: Control,
  errors: ReadonlyMap<string, string>,
): ComponentChildren {
  const message = errors.get(name);
  const id = `f-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const described = message ? { 'aria-invalid': 'true', 'aria-describedby': `${id}-error` } : {};
  return h(
    'div',
    { class: message ? 'field invalid' : 'field' },
    h('label', { for: id }, label),
    h(
      control.tag,
      { ...control.props, id, 'data-field': name, ...described },
      ...(control.children ?? []),
    ),
    message ? h('span', { id: `${id}-error`, class: 'field-error', role: 'alert' }, message) : null,
  );
}
