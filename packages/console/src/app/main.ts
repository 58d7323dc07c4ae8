/**
 * The console's page: a header with the views, and the view the address's fragment names
 * (`#/`, `#/entity/<name>`, `#/top`, `#/config`, `#/alerts?entity=`, `#/audit?entity=`).
 */
import { type ComponentChildren, h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ConfigView } from './config.js';
import { EntityView } from './entity.js';
import { AlertsView, AuditView } from './lists.js';
import { Overview } from './overview.js';
import { TopView } from './top.js';

interface Place {
  readonly view: 'overview' | 'entity' | 'top' | 'config' | 'alerts' | 'audit';
  readonly name: string;
  readonly entity: string;
}

/** Reads the fragment; an unknown one is the overview. */
export function placeOf(hash: string): Place {
  const [path = '', search = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const entity = new URLSearchParams(search).get('entity') ?? '';
  const [view = '', ...rest] = parts;
  const name = decode(rest.join('/'));
  if (view === 'entity' && name) return { view, name, entity };
  if (view === 'top' || view === 'config' || view === 'alerts' || view === 'audit')
    return { view, name, entity };
  return { view: 'overview', name: '', entity };
}

const NAV = [
  ['#/', 'Overview', 'overview'],
  ['#/top', 'Top', 'top'],
  ['#/config', 'Configuration', 'config'],
  ['#/alerts', 'Alerts', 'alerts'],
  ['#/audit', 'Audit', 'audit'],
] as const;

function EntityJump(): ComponentChildren {
  const [name, setName] = useState('');
  return h(
    'form',
    {
      class: 'jump',
      role: 'search',
      onSubmit: (e: Event) => {
        e.preventDefault();
        if (name) location.hash = `#/entity/${encodeURIComponent(name)}`;
      },
    },
    h('label', { for: 'jump', class: 'visually-hidden' }, 'Go to an entity'),
    h('input', {
      id: 'jump',
      type: 'search',
      placeholder: 'entity…',
      value: name,
      onInput: (e: Event) => setName((e.target as HTMLInputElement).value.trim()),
    }),
    h('button', { type: 'submit' }, 'Open'),
  );
}

function viewOf(place: Place): ComponentChildren {
  switch (place.view) {
    case 'entity':
      return h(EntityView, { name: place.name, key: place.name });
    case 'top':
      return h(TopView, null);
    case 'config':
      return h(ConfigView, { path: place.name });
    // Keyed by the entity the address names: another one (or none) is a view of its own.
    case 'alerts':
      return h(AlertsView, { entity: place.entity, key: place.entity });
    case 'audit':
      return h(AuditView, { entity: place.entity, key: place.entity });
    default:
      return h(Overview, null);
  }
}

function App(): ComponentChildren {
  const [place, setPlace] = useState(placeOf(location.hash));
  useEffect(() => {
    const onHash = () => setPlace(placeOf(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const first = useRef(true);
  useEffect(() => {
    document.title = `${place.view === 'entity' ? place.name : place.view} · Sluice console`;
    // A new view takes the focus, as a new page would (not the first: the page starts at the top).
    if (!first.current) document.getElementById('main')?.focus();
    first.current = false;
  }, [place]);
  return h(
    'div',
    { class: 'app' },
    h(
      'a',
      {
        href: '#main',
        class: 'skip',
        onClick: (e: Event) => {
          e.preventDefault();
          document.getElementById('main')?.focus();
        },
      },
      'Skip to content',
    ),
    h(
      'header',
      null,
      h('span', { class: 'brand' }, 'Sluice'),
      h(
        'nav',
        { 'aria-label': 'Views' },
        ...NAV.map(([href, label, view]) =>
          h('a', { href, 'aria-current': place.view === view ? 'page' : undefined }, label),
        ),
      ),
      h(EntityJump, null),
    ),
    h('main', { id: 'main', tabIndex: -1 }, viewOf(place)),
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(h(App, null), root);
}
