/**
 * Entity: one entity as Sluice sees it — its chain of parents, its plan and its own limits, the
 * headroom of every limit that applies for a resource (from `available`), its usage and refusals
 * over time (entity-usage.ts), its alerts, the audit entries that touched it, and its callers.
 */
import { type ComponentChildren, h } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, api, FORBIDDEN, get, segment } from './api.js';
import { UsageCard } from './entity-usage.js';
import { allows, duration, time, zoneOrUtc } from './format.js';
import { ALERT_HEADERS, AUDIT_HEADERS, alertRows, auditRows, latestOf, noneYet } from './lists.js';
import { entityHref, headroomBar, link, section, table, useLoad, whenLoaded } from './ui.js';
import type {
  Alert,
  AuditEntry,
  AvailableAnswer,
  EntityConfig,
  Page,
  PlanConfig,
  ResourceConfig,
  Stored,
} from './wire.js';

/** How many parents Sluice follows (the entity itself included, 8 levels). */
const MAX_DEPTH = 8;

export interface EntityFacts {
  readonly name: string;
  /** Its stored document, or undefined when it has none (defaults apply) or it cannot be read. */
  readonly config: EntityConfig | undefined;
  /** False when the caller's role may not read configuration (the client grant only). */
  readonly configReadable: boolean;
  readonly chain: readonly string[];
  readonly plan: Stored<PlanConfig> | undefined;
  readonly zone: string;
  readonly resources: readonly string[];
}

/** A read the caller's role may not make (403): the view shows what it can without it. */
const UNREADABLE = Symbol('unreadable');

async function readable<T>(read: Promise<T>): Promise<T | typeof UNREADABLE> {
  try {
    return await read;
  } catch (error) {
    if (error instanceof ApiError && error.forbidden) return UNREADABLE;
    throw error;
  }
}

/** A stored document, or undefined when there is none (404). */
async function stored<C>(kind: string, name: string): Promise<Stored<C> | undefined> {
  try {
    return await get<Stored<C>>(`/v1/admin/${kind}/${segment(name)}`);
  } catch (error) {
    if (error instanceof ApiError && error.problem.status === 404) return undefined;
    throw error;
  }
}

/**
 * What the view knows of an entity. Configuration comes from the admin routes; a role with the
 * client grant only may not read them, and then the view shows what the client routes give
 * (headroom, usage) for a resource the user names.
 */
async function loadEntity(name: string): Promise<EntityFacts> {
  const [doc, settings, resources] = await Promise.all([
    readable(stored<EntityConfig>('entities', name)),
    readable(get<Stored<{ timezone?: string }>>('/v1/admin/settings')),
    readable(get<Page<Stored<ResourceConfig>>>('/v1/admin/resources?limit=100')),
  ]);
  if (doc === UNREADABLE)
    return {
      name,
      config: undefined,
      configReadable: false,
      chain: [name],
      plan: undefined,
      zone: 'UTC',
      resources: [],
    };
  const chain = [name];
  let parent = doc?.config.parent;
  while (parent && chain.length < MAX_DEPTH && !chain.includes(parent)) {
    chain.push(parent);
    parent = (await stored<EntityConfig>('entities', parent))?.config.parent;
  }
  const planName = doc?.config.plan ?? 'default';
  const plan = await stored<PlanConfig>('plans', planName);
  const allowed = plan?.config.allowed_resources;
  const named = (allowed ?? []).filter((r) => !r.includes('*'));
  const listed = resources === UNREADABLE ? [] : resources.items.map((r) => r.name);
  const usable = listed.filter((r) => allows(allowed, r));
  const zone = settings === UNREADABLE ? undefined : settings.config.timezone;
  return {
    name,
    config: doc?.config,
    configReadable: true,
    chain,
    plan,
    zone: zoneOrUtc(doc?.config.timezone ?? zone),
    resources: [...new Set([...usable, ...named])].sort(),
  };
}

function Summary({ facts }: { facts: EntityFacts }): ComponentChildren {
  const { config, plan, chain } = facts;
  if (!facts.configReadable)
    return section(
      'Chain, plan and overrides',
      h(
        'p',
        { class: 'note forbidden', role: 'status' },
        `${FORBIDDEN} Its configuration (chain, plan, limits, callers, time zone) needs the admin grant: times here are UTC; name a resource to see its headroom.`,
      ),
    );
  const limits = config?.limits ?? [];
  return section(
    'Chain, plan and overrides',
    h(
      'ol',
      { class: 'chain', 'aria-label': 'Chain, from the entity to its top parent' },
      ...chain.map((name, i) =>
        h('li', null, i === 0 ? h('strong', null, name) : link(entityHref(name), name)),
      ),
    ),
    h(
      'dl',
      { class: 'figures' },
      h('dt', null, 'Plan'),
      h('dd', null, plan ? plan.name : `${config?.plan ?? 'default'} (not stored: no plan limits)`),
      h('dt', null, 'Time zone'),
      h('dd', null, facts.zone),
      h('dt', null, 'Stored'),
      h('dd', null, config ? 'yes' : 'no record: defaults apply'),
      h('dt', null, 'Disabled'),
      h('dd', null, config?.disabled ? 'yes' : 'no'),
    ),
    h('h3', null, 'Its own limits (overrides)'),
    table(
      'Its own limits',
      ['Name', 'Metric', 'Limit', 'Per or window', 'Resource'],
      limits.map((l) => [
        l.name,
        l.metric,
        String(l.limit),
        String(l.per ?? l.window ?? ''),
        l.resource ?? 'all',
      ]),
      'None: its plan’s limits apply.',
    ),
    h('h3', null, 'Callers'),
    (config?.callers ?? []).length === 0
      ? h('p', { class: 'muted' }, 'Any caller with the client grant.')
      : h('ul', null, ...(config?.callers ?? []).map((c) => h('li', null, h('code', null, c)))),
  );
}

function Headroom({
  facts,
  resource,
}: {
  facts: EntityFacts;
  resource: string;
}): ComponentChildren {
  const [loaded, reload] = useLoad(
    () => api<AvailableAnswer>('POST', '/v1/available', { entity: facts.name, resource }),
    [facts.name, resource],
  );
  return section(
    `Headroom on ${resource}`,
    h('button', { type: 'button', onClick: reload }, 'Refresh'),
    whenLoaded(loaded, (answer) =>
      h(
        'ul',
        { class: 'bars', 'data-testid': 'headroom' },
        ...answer.limits.map((l) =>
          h(
            'li',
            { 'data-limit': `${l.scope}.${l.name}` },
            h('span', { class: 'bar-name' }, `${l.scope} · ${l.name}`),
            headroomBar(`${l.scope} ${l.name}`, l.metric, l.limit, l.remaining),
            h('span', { class: 'muted' }, `full again in ${duration(l.reset_ms)}`),
          ),
        ),
      ),
    ),
  );
}

/** The metric of the quota named `limit` among the entity's own limits and its plan's. */
function metricOf(facts: EntityFacts, limit: string): string | undefined {
  const limits = [...(facts.config?.limits ?? []), ...(facts.plan?.config.limits ?? [])];
  return limits.find((l) => l.name === limit)?.metric;
}

/** Its alerts and the audit entries that touched it (read from the latest pages). */
function History({ facts }: { facts: EntityFacts }): ComponentChildren {
  const [alerts] = useLoad(() => latestOf<Alert>('/v1/admin/alerts', facts.name), [facts.name]);
  const [audit] = useLoad(() => latestOf<AuditEntry>('/v1/admin/audit', facts.name), [facts.name]);
  return h(
    'div',
    { class: 'grid' },
    section(
      'Its budget alerts',
      whenLoaded(alerts, (latest) =>
        table(
          'Its budget alerts',
          ALERT_HEADERS,
          alertRows(latest.items, facts.zone, (a) => metricOf(facts, a.limit)),
          noneYet(latest, 'No alerts.'),
        ),
      ),
    ),
    section(
      'Audit entries',
      whenLoaded(audit, (latest) =>
        table(
          'Audit entries',
          AUDIT_HEADERS,
          auditRows(latest.items, facts.zone),
          noneYet(latest, 'No changes recorded.'),
        ),
      ),
    ),
  );
}

export function EntityView({ name }: { name: string }): ComponentChildren {
  const [loaded] = useLoad(() => loadEntity(name), [name]);
  const [picked, setPicked] = useState<string | undefined>(undefined);
  return h(
    'div',
    null,
    h('h1', { class: 'entity-name' }, name),
    whenLoaded(loaded, (facts) => {
      const resource = picked ?? facts.resources[0];
      return [
        h(
          'div',
          { class: 'toolbar' },
          h('label', { for: 'resource' }, 'Resource'),
          facts.configReadable
            ? h(
                'select',
                {
                  id: 'resource',
                  value: resource ?? '',
                  onChange: (e: Event) => setPicked((e.target as HTMLSelectElement).value),
                },
                ...facts.resources.map((r) => h('option', { value: r }, r)),
              )
            : // The resources are configuration too: the user names one.
              h('input', {
                id: 'resource',
                type: 'text',
                placeholder: 'gpt-4o',
                value: resource ?? '',
                onChange: (e: Event) =>
                  setPicked((e.target as HTMLInputElement).value.trim() || undefined),
              }),
          h(
            'span',
            { class: 'muted' },
            `Times in ${facts.zone}; updated ${time(new Date().toISOString(), facts.zone)}`,
          ),
        ),
        h(
          'div',
          { class: 'grid' },
          h(Summary, { facts }),
          resource
            ? h(Headroom, { facts, resource })
            : section(
                'Headroom',
                h(
                  'p',
                  { class: 'muted' },
                  facts.configReadable
                    ? 'No resource is stored yet.'
                    : 'Name a resource to see its headroom.',
                ),
              ),
        ),
        h(UsageCard, { facts, resource }),
        h(History, { facts }),
      ];
    }),
  );
}
