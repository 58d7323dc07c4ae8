/**
 * Configuration: plans, resources and entities, listed and edited through forms. The admin API
 * validates every write; a refusal's `field` puts its message beside that field (or above the
 * form when the form has no such field), and every saved edit is in the audit.
 */
import { type ComponentChildren, h } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { ApiError, call, FORBIDDEN, get, segment } from './api.js';
import { own, time } from './format.js';
import { type LimitRow, LimitsFields, limitOf, numberOr, rowOf } from './limits-form.js';
import {
  type Control,
  entityHref,
  field,
  link,
  section,
  table,
  useLoad,
  whenLoaded,
} from './ui.js';
import type { Limit, Page, Stored } from './wire.js';

export type Kind = 'plan' | 'resource' | 'entity';
const PLURAL: Readonly<Record<Kind, string>> = {
  plan: 'plans',
  resource: 'resources',
  entity: 'entities',
};

/** The form's simple fields of each kind: config key, label, and how its text becomes a value. */
type Convert = 'text' | 'number' | 'list' | 'bool';
const FIELDS: Readonly<Record<Kind, readonly (readonly [string, string, Convert])[]>> = {
  plan: [
    ['allowed_resources', 'Allowed resources (comma-separated; empty: all)', 'list'],
    ['max_input_tokens', 'Max input tokens', 'number'],
    ['priority', 'Priority (1–100)', 'number'],
    ['description', 'Description', 'text'],
  ],
  entity: [
    ['plan', 'Plan', 'text'],
    ['parent', 'Parent', 'text'],
    ['timezone', 'Time zone', 'text'],
    ['callers', 'Callers (IAM principal patterns, comma-separated)', 'list'],
    ['disabled', 'Disabled', 'bool'],
    ['description', 'Description', 'text'],
  ],
  resource: [
    ['price.input', 'Price of input (USD per million tokens)', 'text'],
    ['price.output', 'Price of output (USD per million tokens)', 'text'],
    ['price.cached_input', 'Price of cached input', 'text'],
    ['description', 'Description', 'text'],
  ],
};

type Values = ReadonlyMap<string, string>;

function read(config: Record<string, unknown>, key: string): unknown {
  const [head = '', sub] = key.split('.');
  const value = own(config, head);
  if (sub === undefined) return value;
  return typeof value === 'object' && value !== null
    ? own(value as Record<string, unknown>, sub)
    : undefined;
}

function valuesOf(kind: Kind, config: Record<string, unknown>): Map<string, string> {
  return new Map(
    FIELDS[kind].map(([key]) => {
      const value = read(config, key);
      return [
        key,
        Array.isArray(value) ? value.join(', ') : value === undefined ? '' : String(value),
      ];
    }),
  );
}

/** The document to PUT: the stored one, with what the form shows replaced. */
function documentOf(
  kind: Kind,
  stored: Record<string, unknown>,
  values: Values,
  rows: readonly LimitRow[],
) {
  const doc = new Map(Object.entries(stored));
  const price = new Map(
    Object.entries((stored.price as Record<string, unknown> | undefined) ?? {}),
  );
  for (const [key, , convert] of FIELDS[kind]) {
    const text = (values.get(key) ?? '').trim();
    const value =
      convert === 'number'
        ? numberOr(text)
        : convert === 'list'
          ? text
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : convert === 'bool'
            ? text === 'true'
            : text;
    const empty = text === '' || (convert === 'bool' && value === false);
    const [head = '', sub] = key.split('.');
    if (sub !== undefined) empty ? price.delete(sub) : price.set(sub, value);
    else empty ? doc.delete(head) : doc.set(head, value);
  }
  if (kind === 'resource')
    price.size ? doc.set('price', Object.fromEntries(price)) : doc.delete('price');
  rows.length ? doc.set('limits', rows.map(limitOf)) : doc.delete('limits');
  return Object.fromEntries(doc);
}

/** What a save came to: saved, refused (`forbidden`: the caller's role may not write it), or not. */
interface Outcome {
  readonly ok: boolean;
  readonly text: string;
  readonly forbidden?: boolean;
}

/** A stored document as read or saved here, with its entity tag (the `ETag` of that answer). */
interface Tagged {
  readonly doc: Stored;
  readonly etag: string | undefined;
}

/** What a save came to, and the document as stored after it (when saved). */
interface Saved {
  readonly errors: ReadonlyMap<string, string>;
  readonly outcome: Outcome;
  readonly stored?: Tagged;
}

/**
 * PUTs a document on the version the form was opened at (a new one only if none is stored by
 * then), so a change made elsewhere meanwhile is never overwritten unseen; a refusal naming a
 * field puts its message beside that field.
 */
async function put(
  kind: Kind,
  name: string,
  body: Record<string, unknown>,
  openedAt: Tagged | undefined,
): Promise<Saved> {
  // (An answer without a tag, from a Sluice before tags: at least it must still be stored.)
  const condition = openedAt ? { 'if-match': openedAt.etag ?? '*' } : { 'if-none-match': '*' };
  try {
    const path = `/v1/admin/${PLURAL[kind]}/${segment(name)}`;
    const saved = await call<Stored>('PUT', path, body, condition);
    const text = `Saved ${kind} ${saved.body.name} (version ${saved.body.version}).`;
    const stored = { doc: saved.body, etag: saved.etag };
    return { errors: new Map(), outcome: { ok: true, text }, stored };
  } catch (error) {
    const problem = error instanceof ApiError ? error.problem : undefined;
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof ApiError && error.forbidden)
      return {
        errors: new Map(),
        outcome: { ok: false, text: `Not saved. ${FORBIDDEN}`, forbidden: true },
      };
    if (problem?.code === 'precondition_failed') {
      const text = openedAt
        ? `Not saved: this ${kind} was changed elsewhere since you opened it (${problem.detail ?? ''}). Your edits are still here: reload the page to see the stored one, then make them again.`
        : `Not saved: a ${kind} named ${name} already exists. Open it from the list to edit it.`;
      return { errors: new Map(), outcome: { ok: false, text } };
    }
    if (!problem?.field)
      return { errors: new Map(), outcome: { ok: false, text: `Not saved: ${message}` } };
    return {
      errors: new Map([[problem.field, problem.detail ?? 'invalid']]),
      outcome: { ok: false, text: `Not saved: ${problem.field}: ${problem.detail ?? ''}` },
    };
  }
}

/** The control of one simple field: a checkbox, or a line of text. */
function control(key: string, convert: Convert, values: Values, set: (v: Values) => void): Control {
  if (convert === 'bool')
    return {
      tag: 'input',
      props: {
        type: 'checkbox',
        checked: values.get(key) === 'true',
        onChange: (e: Event) =>
          set(new Map(values).set(key, String((e.target as HTMLInputElement).checked))),
      },
    };
  return {
    tag: 'input',
    props: {
      type: 'text',
      value: values.get(key) ?? '',
      onInput: (e: Event) => set(new Map(values).set(key, (e.target as HTMLInputElement).value)),
    },
  };
}

/** What the editor's form shows of its saves, and the save itself. */
interface Saving {
  readonly save: (e: Event) => Promise<void>;
  readonly saving: boolean;
  readonly errors: ReadonlyMap<string, string>;
  readonly outcome: Outcome | undefined;
  /** The document as last read or saved here: the version the next save writes over. */
  readonly current: Tagged | undefined;
}

/**
 * The editor's saves: one at a time (a second click while one is in flight would write over the
 * first's version, or create what it just created, and be refused for it), each on the version
 * last read or saved here.
 */
function useSaving(
  kind: Kind,
  stored: Tagged | undefined,
  document: (current: Tagged | undefined) => { name: string; body: Record<string, unknown> },
  onCreated: (name: string) => void,
): Saving {
  const [errors, setErrors] = useState<ReadonlyMap<string, string>>(new Map());
  const [outcome, setOutcome] = useState<Outcome | undefined>(undefined);
  const [current, setCurrent] = useState<Tagged | undefined>(stored);
  const [saving, setSaving] = useState(false);
  const inFlight = useRef(false);
  const save = async (e: Event) => {
    e.preventDefault();
    if (inFlight.current) return;
    inFlight.current = true;
    setSaving(true);
    setErrors(new Map());
    setOutcome(undefined);
    try {
      const { name, body } = document(current);
      const result = await put(kind, name, body, current);
      setErrors(result.errors);
      setOutcome(result.outcome);
      if (!result.stored) return;
      setCurrent(result.stored);
      if (current) return;
      // A new document is now this one: its address and title, and the next save replaces it.
      history.replaceState(null, '', `#/config/${kind}/${encodeURIComponent(name)}`);
      onCreated(name);
    } finally {
      inFlight.current = false;
      setSaving(false);
    }
  };
  return { save, saving, errors, outcome, current };
}

function Editor({
  kind,
  name,
  stored,
  onCreated,
}: {
  kind: Kind;
  name: string;
  stored: Tagged | undefined;
  onCreated: (name: string) => void;
}): ComponentChildren {
  const config = stored?.doc.config ?? {};
  const [docName, setDocName] = useState(name);
  const [values, setValues] = useState<Values>(valuesOf(kind, config));
  const [rows, setRows] = useState<LimitRow[]>(
    ((config.limits as Limit[] | undefined) ?? []).map(rowOf),
  );
  const { save, saving, errors, outcome, current } = useSaving(
    kind,
    stored,
    (last) => ({ name: docName, body: documentOf(kind, last?.doc.config ?? {}, values, rows) }),
    onCreated,
  );
  const input = (key: string, convert: Convert) => control(key, convert, values, setValues);
  const doc = current?.doc;
  return h(
    'form',
    { class: 'editor', onSubmit: save, 'aria-label': `${kind} ${docName || '(new)'}` },
    outcome
      ? h(
          'p',
          {
            class: outcome.ok ? 'note ok' : outcome.forbidden ? 'note forbidden' : 'note error',
            role: 'status',
            'data-testid': 'outcome',
          },
          outcome.text,
        )
      : null,
    doc
      ? h(
          'p',
          { class: 'muted', 'data-testid': 'version' },
          `Version ${doc.version}${doc.updated_at ? `, updated ${time(doc.updated_at)}` : ''}${doc.updated_by ? ` by ${doc.updated_by}` : ''}`,
        )
      : field(
          'Name',
          kind,
          {
            tag: 'input',
            props: {
              type: 'text',
              required: true,
              value: docName,
              onInput: (e: Event) => setDocName((e.target as HTMLInputElement).value.trim()),
            },
          },
          errors,
        ),
    ...FIELDS[kind].map(([key, label, convert]) => field(label, key, input(key, convert), errors)),
    h(LimitsFields, { rows, setRows, errors, withResource: kind !== 'resource' }),
    h(
      'div',
      { class: 'toolbar' },
      h(
        'button',
        { type: 'submit', class: 'primary', disabled: saving, 'aria-busy': saving },
        doc ? 'Save' : `Create ${kind}`,
      ),
      link('#/config', 'Back to the list'),
    ),
  );
}

function EditView({ kind, name }: { kind: Kind; name: string }): ComponentChildren {
  const [loaded] = useLoad(async (): Promise<Tagged | undefined> => {
    if (!name) return undefined;
    const read = await call<Stored>('GET', `/v1/admin/${PLURAL[kind]}/${segment(name)}`);
    return { doc: read.body, etag: read.etag };
  }, [kind, name]);
  // A document created here takes its name as the title (its address changes without a reload).
  const [title, setTitle] = useState(name);
  return section(
    title ? `${kind} ${title}` : `New ${kind}`,
    whenLoaded(loaded, (stored) =>
      h(Editor, { kind, name, stored, onCreated: setTitle, key: `${kind}/${name}` }),
    ),
  );
}

function KindList({ kind }: { kind: Kind }): ComponentChildren {
  const [loaded] = useLoad(() => get<Page<Stored>>(`/v1/admin/${PLURAL[kind]}?limit=200`), [kind]);
  const href = (name: string) => `#/config/${kind}/${encodeURIComponent(name)}`;
  return section(
    PLURAL[kind][0]?.toUpperCase() + PLURAL[kind].slice(1),
    h('p', null, link(`#/config/${kind}`, `New ${kind}`, { class: 'button' })),
    whenLoaded(loaded, (page) =>
      table(
        PLURAL[kind],
        ['Name', 'Version', 'Updated', ''],
        page.items.map((d) => [
          kind === 'entity' ? link(entityHref(d.name), d.name) : d.name,
          String(d.version),
          d.updated_at ? time(d.updated_at) : '',
          link(href(d.name), 'Edit', { 'aria-label': `Edit ${kind} ${d.name}` }),
        ]),
        `No ${PLURAL[kind]} stored.`,
      ),
    ),
  );
}

/** `path` is what follows `#/config/`: empty (the lists), `<kind>` (new) or `<kind>/<name>`. */
export function ConfigView({ path }: { path: string }): ComponentChildren {
  const [kind = '', ...rest] = path.split('/');
  if (kind === 'plan' || kind === 'resource' || kind === 'entity')
    return h(EditView, { kind, name: rest.join('/'), key: path });
  return h(
    'div',
    { class: 'grid' },
    h(KindList, { kind: 'plan' }),
    h(KindList, { kind: 'resource' }),
    h(KindList, { kind: 'entity' }),
  );
}
