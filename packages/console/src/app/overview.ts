/**
 * Overview: the deployment as a whole, from the roll-up of usage history — decisions and refusals
 * per hour (by limit), tokens and cost settled today beside the provider-wide quotas, the
 * entities nearest a limit, and the latest budget alerts.
 */
import { type ComponentChildren, h } from 'preact';
import { api, get, query } from './api.js';
import { Chart, type Series } from './chart.js';
import { allows, count, own, usd, withUnit } from './format.js';
import { ALERT_HEADERS, alertRows } from './lists.js';
import { entityHref, headroomBar, link, section, table, useLoad, whenLoaded } from './ui.js';
import type {
  Alert,
  AvailableAnswer,
  EntityConfig,
  Page,
  PlanConfig,
  ResourceConfig,
  Stored,
  TopAnswer,
  UsageAnswer,
  UsagePeriod,
} from './wire.js';

const HOUR_MS = 3_600_000;

/** The last day of hours, to the end of this hour (UTC). */
function lastDay(): { from: string; to: string } {
  const end = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS;
  return {
    from: new Date(end - 24 * HOUR_MS).toISOString(),
    to: new Date(end).toISOString(),
  };
}

/** Admitted calls and each limit's refusals, per period. */
export function decisionSeries(items: readonly UsagePeriod[]): Series[] {
  const limits = [...new Set(items.flatMap((item) => Object.keys(item.denied)))].sort();
  return [
    { label: 'admitted', metric: 'requests', values: items.map((item) => item.leases) },
    ...limits.map((name) => ({
      label: `refused by ${name}`,
      metric: 'requests',
      values: items.map((item) => own(item.denied, name) ?? 0),
    })),
  ];
}

function Decisions(): ComponentChildren {
  const [loaded] = useLoad(() => {
    const { from, to } = lastDay();
    return get<UsageAnswer>(`/v1/admin/usage/overview${query({ granularity: 'hour', from, to })}`);
  }, []);
  return section(
    'Decisions and refusals, last 24 hours (UTC)',
    whenLoaded(loaded, (answer) =>
      h(Chart, {
        title: 'Decisions and refusals per hour',
        periods: answer.items.map((item) => item.period_start),
        granularity: 'hour',
        zone: 'UTC',
        series: decisionSeries(answer.items),
        testId: 'overview-decisions',
      }),
    ),
  );
}

interface Today {
  readonly total: UsagePeriod | undefined;
  readonly quotas: readonly {
    resource: string;
    name: string;
    metric: string;
    limit: number;
    used: number;
  }[];
}

/** Today's totals (UTC), and each resource's daily quota beside what that resource used. */
async function loadToday(): Promise<Today> {
  const from = `${new Date().toISOString().slice(0, 10)}T00:00:00Z`;
  const day = (resource?: string) =>
    get<UsageAnswer>(`/v1/admin/usage/overview${query({ granularity: 'day', from, resource })}`);
  const [totals, resources] = await Promise.all([
    day(),
    get<Page<Stored<ResourceConfig>>>('/v1/admin/resources?limit=100'),
  ]);
  const daily = resources.items.flatMap((r) =>
    (r.config.limits ?? [])
      .filter((l) => l.window === 'day')
      .map((l) => ({ resource: r.name, name: l.name, metric: l.metric, limit: l.limit })),
  );
  const quotas = await Promise.all(
    daily.slice(0, 8).map(async (q) => {
      const used = (await day(q.resource)).items.at(-1);
      return { ...q, used: (used && own(used.usage, q.metric)) ?? 0 };
    }),
  );
  return { total: totals.items.at(-1), quotas };
}

function TodayCard(): ComponentChildren {
  const [loaded] = useLoad(loadToday, []);
  return section(
    'Settled today (UTC)',
    whenLoaded(loaded, ({ total, quotas }) => [
      h(
        'dl',
        { class: 'figures', 'data-testid': 'today' },
        h('dt', null, 'Tokens'),
        h('dd', null, withUnit('tokens', (total && own(total.usage, 'tokens')) ?? 0)),
        h('dt', null, 'Cost'),
        h('dd', null, usd((total && own(total.usage, 'cost_micro_usd')) ?? 0)),
        h('dt', null, 'Calls admitted'),
        h('dd', null, count(total?.leases ?? 0)),
      ),
      quotas.length === 0
        ? h('p', { class: 'muted' }, 'No provider-wide daily quota is configured.')
        : quotas.map((q) =>
            h(
              'div',
              null,
              h('h3', null, `${q.resource} · ${q.name}`),
              headroomBar(`${q.resource} ${q.name}`, q.metric, q.limit, q.limit - q.used),
            ),
          ),
    ]),
  );
}

interface Nearest {
  readonly entity: string;
  readonly resource: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
}

/**
 * The entities nearest a limit: today's leaders by tokens and by refusals, asked what is left of
 * each limit for each stored resource their plan allows (a handful of `available` calls, none of
 * which consumes).
 */
async function loadNearest(): Promise<Nearest[]> {
  const [byTokens, byDenied, resources, entities, plans] = await Promise.all([
    get<TopAnswer>('/v1/admin/usage/top?metric=tokens&limit=6'),
    get<TopAnswer>('/v1/admin/usage/top?by=denied&limit=6'),
    get<Page<Stored<ResourceConfig>>>('/v1/admin/resources?limit=4'),
    get<Page<Stored<EntityConfig>>>('/v1/admin/entities?limit=1000'),
    get<Page<Stored<PlanConfig>>>('/v1/admin/plans?limit=1000'),
  ]);
  const planOf = new Map(entities.items.map((e) => [e.name, e.config.plan ?? 'default']));
  const allowedBy = new Map(plans.items.map((p) => [p.name, p.config.allowed_resources]));
  const names = [...new Set([...byDenied.items, ...byTokens.items].map((i) => i.entity))];
  const asks = names.slice(0, 8).flatMap((entity) =>
    resources.items
      .filter((r) => allows(allowedBy.get(planOf.get(entity) ?? 'default'), r.name))
      .map(async ({ name: resource }): Promise<Nearest[]> => {
        try {
          const body = { entity, resource };
          const available = await api<AvailableAnswer>('POST', '/v1/available', body);
          return available.limits.map((l) => ({ entity, resource, ...l }));
        } catch {
          return []; // refused there (by an ancestor's plan), or no limit applies: nothing to show
        }
      }),
  );
  const all = (await Promise.all(asks)).flat();
  const share = (n: Nearest) => (n.limit > 0 ? n.remaining / n.limit : 1);
  return all.sort((a, b) => share(a) - share(b)).slice(0, 8);
}

function NearestCard(): ComponentChildren {
  const [loaded] = useLoad(loadNearest, []);
  return section(
    'Nearest a limit',
    whenLoaded(loaded, (items) =>
      table(
        'Entities nearest a limit',
        ['Entity', 'Resource', 'Limit', 'Headroom'],
        items.map((n) => [
          link(entityHref(n.entity), n.entity),
          n.resource,
          n.name,
          headroomBar(`${n.entity} ${n.name}`, n.metric, n.limit, n.remaining),
        ]),
        'No entity has used anything today.',
      ),
    ),
  );
}

function RecentAlerts(): ComponentChildren {
  const [loaded] = useLoad(() => get<Page<Alert>>('/v1/admin/alerts?limit=5'), []);
  return section(
    'Recent budget alerts',
    whenLoaded(loaded, (page) =>
      table('Recent budget alerts', ALERT_HEADERS, alertRows(page.items), 'No alerts.'),
    ),
    h('p', null, link('#/alerts', 'All alerts')),
  );
}

export function Overview(): ComponentChildren {
  return h(
    'div',
    { class: 'grid' },
    h(Decisions, null),
    h(TodayCard, null),
    h(NearestCard, null),
    h(RecentAlerts, null),
  );
}
