/**
 * Alerts and audit: paged lists (newest first), filtered by entity. Sluice filters (`?entity=`):
 * a filtered page holds what it found among the items it read, maybe fewer than asked, with a
 * `next` while older ones may follow.
 */
import { type ComponentChildren, h } from 'preact';
import { useState } from 'preact/hooks';
import { get, query } from './api.js';
import { own, time, withUnit } from './format.js';
import { entityHref, link, section, table, useLoad, whenLoaded } from './ui.js';
import type { Alert, AuditEntry, Page } from './wire.js';

export const ALERT_HEADERS = ['When', 'Entity', 'Resource', 'Limit', 'Threshold', 'Used', 'Sent'];

/**
 * Alerts as table rows. An alert does not name its quota's metric: `metricOf` says it where the
 * configuration is known (an entity's view), else the figures are shown without a unit (a name
 * says nothing of it: a quota named `budget` may count tokens or micro-dollars).
 */
export function alertRows(
  items: readonly Alert[],
  zone = 'UTC',
  metricOf: (alert: Alert) => string | undefined = () => undefined,
): ComponentChildren[][] {
  return items.map((a) => {
    const metric = metricOf(a) ?? '';
    return [
      time(a.at, zone),
      a.entity === null ? 'provider-wide' : link(entityHref(a.entity), a.entity),
      a.resource ?? 'all',
      `${a.limit} (${a.window})`,
      `${Math.round(a.threshold * 100)}%`,
      `${withUnit(metric, a.used)} of ${withUnit(metric, a.limit_value)}`,
      a.delivered ? 'yes' : 'no',
    ];
  });
}

export const AUDIT_HEADERS = ['When', 'Who', 'Action', 'What', 'Change'];

/** The names a change touched: the top-level fields whose values differ. */
function changed(entry: AuditEntry): string {
  const before = entry.before ?? {};
  const after = entry.after ?? {};
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const differ = names.filter(
    (n) => JSON.stringify(own(before, n)) !== JSON.stringify(own(after, n)),
  );
  return differ.length ? differ.join(', ') : '—';
}

export function auditRows(items: readonly AuditEntry[], zone = 'UTC'): ComponentChildren[][] {
  return items.map((e) => [
    time(e.at, zone),
    e.who,
    e.action,
    e.kind === 'entity' ? [`entity `, link(entityHref(e.name), e.name)] : `${e.kind} ${e.name}`,
    h(
      'details',
      null,
      h('summary', null, changed(e)),
      h('pre', null, JSON.stringify({ before: e.before, after: e.after }, null, 2)),
    ),
  ]);
}

/** An entity's latest items, and whether older ones may follow (unread). */
export interface Latest<T> {
  readonly items: readonly T[];
  readonly more: boolean;
}

/**
 * An entity's latest items of a listing (Sluice filters: `?entity=`): up to `count`, reading up
 * to `pages` pages (a filtered page may hold fewer than asked).
 */
export async function latestOf<T>(
  path: string,
  entity: string,
  count = 50,
  pages = 5,
): Promise<Latest<T>> {
  const kept: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < pages && kept.length < count; i++) {
    const limit = String(count - kept.length);
    const page = await get<Page<T>>(`${path}${query({ limit, cursor, entity })}`);
    kept.push(...page.items);
    if (!page.next) return { items: kept, more: false };
    cursor = page.next;
  }
  return { items: kept, more: true };
}

/** What a list of an entity's latest items says when it is empty. */
export const noneYet = (latest: Latest<unknown>, none: string): string =>
  latest.more ? `${none.replace(/\.$/, '')} among the latest: older ones may follow.` : none;

interface Pager<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

/** A paged list with an entity filter. */
function PagedList<T>(props: {
  title: string;
  path: string;
  headers: readonly string[];
  rows: (items: readonly T[]) => ComponentChildren[][];
  initialEntity: string;
  testId: string;
  /** The view's address, after `#/`. */
  view: string;
}): ComponentChildren {
  // The entity typed, and the one the list shows (Sluice filters: `?entity=`), set on Enter.
  const [typed, setTyped] = useState(props.initialEntity);
  const [entity, setEntity] = useState(props.initialEntity);
  const [pages, setPages] = useState<string[]>([]);
  const cursor = pages.at(-1);
  const [loaded] = useLoad(
    () =>
      get<Pager<T>>(`${props.path}${query({ limit: '50', cursor, entity: entity || undefined })}`),
    [props.path, cursor, entity],
  );
  const filter = (e: Event) => {
    e.preventDefault();
    setPages([]);
    setEntity(typed);
    // The address says the filter too: a reload or a shared link shows the same list.
    history.replaceState(null, '', `#/${props.view}${query({ entity: typed || undefined })}`);
  };
  return section(
    props.title,
    h(
      'form',
      { class: 'toolbar', role: 'search', onSubmit: filter },
      h('label', { for: `${props.testId}-entity` }, 'Entity'),
      h('input', {
        id: `${props.testId}-entity`,
        type: 'search',
        value: typed,
        placeholder: 'all entities',
        onInput: (e: Event) => setTyped((e.target as HTMLInputElement).value.trim()),
      }),
      h('button', { type: 'submit' }, 'Filter'),
    ),
    whenLoaded(loaded, (page) => {
      // Filtered, a page holds what Sluice found in the items it read: maybe less than a page.
      const empty = page.next ? 'None in this stretch: older ones may follow.' : 'Nothing here.';
      return [
        table(props.title, props.headers, props.rows(page.items), empty, props.testId),
        h(
          'div',
          { class: 'toolbar' },
          h(
            'button',
            {
              type: 'button',
              disabled: pages.length === 0,
              onClick: () => setPages(pages.slice(0, -1)),
            },
            'Newer',
          ),
          h(
            'button',
            {
              type: 'button',
              disabled: !page.next,
              onClick: () => page.next && setPages([...pages, page.next]),
            },
            'Older',
          ),
        ),
      ];
    }),
  );
}

export function AlertsView({ entity }: { entity: string }): ComponentChildren {
  return h(PagedList<Alert>, {
    title: 'Budget alerts',
    path: '/v1/admin/alerts',
    headers: ALERT_HEADERS,
    rows: (items) => alertRows(items),
    initialEntity: entity,
    testId: 'alerts',
    view: 'alerts',
  });
}

export function AuditView({ entity }: { entity: string }): ComponentChildren {
  return h(PagedList<AuditEntry>, {
    title: 'Audit',
    path: '/v1/admin/audit',
    headers: AUDIT_HEADERS,
    rows: (items) => auditRows(items),
    initialEntity: entity,
    testId: 'audit',
    view: 'audit',
  });
}
