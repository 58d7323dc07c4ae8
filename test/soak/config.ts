/**
 * What the soak configures through the admin API, the edits it makes mid-run, and the soak's
 * own model of it: which limits (on which table items) an acquire for an entity and a resource
 * meets. The model is written from the documented resolution rules, not from Sluice's code, so
 * an oracle built on it can catch a scope Sluice forgot to charge.
 */

/** A limit as the admin API takes it (the subset the soak uses). */
export interface SoakLimit {
  readonly name: string;
  readonly metric: 'requests' | 'tokens' | 'input_tokens' | 'output_tokens';
  readonly limit: number;
  readonly per?: 'second' | 'minute';
  readonly burst?: number;
  readonly window?: 'day';
  readonly timezone?: string;
  readonly alerts?: readonly number[];
  readonly mode?: 'shadow';
  /** Only for this resource (an exact name): its own item, (entity, resource). */
  readonly resource?: string;
}

export interface SoakConfig {
  readonly settings: { readonly timezone: string };
  readonly resources: Readonly<Record<string, { readonly limits: readonly SoakLimit[] }>>;
  readonly plans: Readonly<Record<string, { readonly limits: readonly SoakLimit[] }>>;
  readonly entities: Readonly<
    Record<
      string,
      {
        readonly plan?: string;
        readonly parent?: string;
        readonly limits?: readonly SoakLimit[];
        readonly timezone?: string;
      }
    >
  >;
}

export const BIG = 'gpt-big';
export const SMALL = 'gpt-small';
export const ORG = 'org-a';
export const KEYS = ['key-a1', 'key-a2', 'key-a3', 'key-a4'] as const;
export const TIGHT = 'key-tight';
export const SHADOW = 'key-shadow';
export const QUEUE = 'key-queue';
/** A key whose model-specific limit binds first: its calls fall back to the smaller model. */
export const FALLBACK = 'key-fallback';
/** Every entity the clients act for, and the org above most of them. */
export const ENTITIES = [...KEYS, TIGHT, SHADOW, QUEUE, FALLBACK, ORG] as const;

/**
 * A fixed-offset zone whose day is near its middle now, so that a run never crosses midnight
 * there: daily quotas and usage days each stay one window for the whole run.
 */
export function middayZone(nowMs: number): string {
  const hour = new Date(nowMs).getUTCHours();
  let best = 0;
  for (let offset = -12; offset <= 14; offset++) {
    const local = (((hour + offset) % 24) + 24) % 24;
    const bestLocal = (((hour + best) % 24) + 24) % 24;
    if (Math.abs(local - 12) < Math.abs(bestLocal - 12)) best = offset;
  }
  // POSIX-style names: Etc/GMT-3 is three hours ahead of UTC.
  return best === 0 ? 'Etc/GMT' : best > 0 ? `Etc/GMT-${best}` : `Etc/GMT+${-best}`;
}

/** The starting configuration. Daily budgets scale with the run so that alerts fire. */
export function initialConfig(seconds: number, zone: string): SoakConfig {
  const keyDaily = Math.round(100 * seconds);
  const orgDaily = Math.round(400 * seconds);
  return {
    settings: { timezone: zone },
    resources: {
      [BIG]: { limits: [{ name: 'provider_tpm', metric: 'tokens', limit: 8_000, per: 'minute' }] },
      [SMALL]: {
        limits: [{ name: 'provider_rpm', metric: 'requests', limit: 150, per: 'minute' }],
      },
    },
    plans: {
      std: {
        limits: [
          { name: 'rpm', metric: 'requests', limit: 40, per: 'minute' },
          { name: 'tpm', metric: 'tokens', limit: 6_000, per: 'minute' },
          { name: 'big_tpm', metric: 'tokens', limit: 3_000, per: 'minute', resource: BIG },
          {
            name: 'daily',
            metric: 'tokens',
            limit: keyDaily,
            window: 'day',
            timezone: zone,
            alerts: [0.5, 0.8, 1],
          },
        ],
      },
      tight: {
        limits: [
          { name: 'rpm', metric: 'requests', limit: 6, per: 'minute' },
          { name: 'tpm', metric: 'tokens', limit: 3_000, per: 'minute' },
        ],
      },
      shadowed: {
        limits: [
          { name: 'tpm', metric: 'tokens', limit: 40_000, per: 'minute' },
          { name: 'new_tpm', metric: 'tokens', limit: 2_000, per: 'minute', mode: 'shadow' },
        ],
      },
      queued: { limits: [{ name: 'rps', metric: 'requests', limit: 2, per: 'second' }] },
      roomy: {
        limits: [
          { name: 'tpm', metric: 'tokens', limit: 40_000, per: 'minute' },
          { name: 'big_tpm', metric: 'tokens', limit: 1_500, per: 'minute', resource: BIG },
        ],
      },
    },
    entities: {
      [ORG]: {
        timezone: zone,
        limits: [
          { name: 'org_tpm', metric: 'tokens', limit: 20_000, per: 'minute' },
          {
            name: 'org_daily',
            metric: 'tokens',
            limit: orgDaily,
            window: 'day',
            timezone: zone,
            alerts: [0.25, 0.5, 0.75],
          },
        ],
      },
      ...Object.fromEntries(KEYS.map((key) => [key, { plan: 'std', parent: ORG, timezone: zone }])),
      [TIGHT]: { plan: 'tight', parent: ORG, timezone: zone },
      [SHADOW]: { plan: 'shadowed', timezone: zone },
      [QUEUE]: { plan: 'queued', timezone: zone },
      [FALLBACK]: { plan: 'roomy', timezone: zone },
    },
  };
}

/** A document to write: its admin path and body. */
export interface ConfigWrite {
  readonly kind: 'plan' | 'entity' | 'resource';
  readonly name: string;
}

/** An admin action mid-run, at a share of the run's length. */
export type Edit =
  | {
      readonly at: number;
      readonly label: string;
      readonly write: ConfigWrite;
      readonly change: (config: SoakConfig) => SoakConfig;
    }
  | { readonly at: number; readonly label: string; readonly rotate: true };

const replaceLimit = (
  limits: readonly SoakLimit[],
  name: string,
  change: (limit: SoakLimit) => SoakLimit,
): SoakLimit[] => limits.map((l) => (l.name === name ? change(l) : l));

function withPlanLimit(
  config: SoakConfig,
  plan: string,
  name: string,
  change: (limit: SoakLimit) => SoakLimit,
): SoakConfig {
  const doc = config.plans[plan];
  if (!doc) throw new Error(`no plan ${plan}`);
  return {
    ...config,
    plans: { ...config.plans, [plan]: { ...doc, limits: replaceLimit(doc.limits, name, change) } },
  };
}

/** The admin's edits: limits raised and lowered, budgets cut, the signing key rotated twice. */
export const EDITS: readonly Edit[] = [
  {
    at: 0.21,
    label: 'plan std: tpm 6,000 → 8,000/min',
    write: { kind: 'plan', name: 'std' },
    change: (c) => withPlanLimit(c, 'std', 'tpm', (l) => ({ ...l, limit: 8_000 })),
  },
  { at: 0.4, label: 'signing key rotated', rotate: true },
  {
    at: 0.45,
    label: 'org-a: org_daily budget cut to 70%',
    write: { kind: 'entity', name: ORG },
    change: (c) => {
      const org = c.entities[ORG];
      if (!org?.limits) throw new Error('no org');
      return {
        ...c,
        entities: {
          ...c.entities,
          [ORG]: {
            ...org,
            limits: replaceLimit(org.limits, 'org_daily', (l) => ({
              ...l,
              limit: Math.round(l.limit * 0.7),
            })),
          },
        },
      };
    },
  },
  {
    at: 0.58,
    label: `${BIG}: provider_tpm 8,000 → 5,000/min`,
    write: { kind: 'resource', name: BIG },
    change: (c) => ({
      ...c,
      resources: {
        ...c.resources,
        [BIG]: {
          limits: [{ name: 'provider_tpm', metric: 'tokens', limit: 5_000, per: 'minute' }],
        },
      },
    }),
  },
  {
    at: 0.62,
    label: 'plan std: daily budget cut to 75%',
    write: { kind: 'plan', name: 'std' },
    change: (c) =>
      withPlanLimit(c, 'std', 'daily', (l) => ({ ...l, limit: Math.round(l.limit * 0.75) })),
  },
  { at: 0.7, label: 'signing key rotated', rotate: true },
  {
    at: 0.75,
    label: 'plan std: tpm 8,000 → 4,500/min',
    write: { kind: 'plan', name: 'std' },
    change: (c) => withPlanLimit(c, 'std', 'tpm', (l) => ({ ...l, limit: 4_500 })),
  },
];

/** The body the admin API takes for a document of the configuration. */
export function documentOf(config: SoakConfig, write: ConfigWrite): unknown {
  const doc =
    write.kind === 'plan'
      ? config.plans[write.name]
      : write.kind === 'entity'
        ? config.entities[write.name]
        : config.resources[write.name];
  if (!doc) throw new Error(`no ${write.kind} ${write.name}`);
  return doc;
}

/** Every document, in the order the admin API accepts them (resources, plans, parents first). */
export function allWrites(config: SoakConfig): ConfigWrite[] {
  const entities = Object.keys(config.entities).sort(
    (a, b) =>
      Number(config.entities[a]?.parent !== undefined) -
      Number(config.entities[b]?.parent !== undefined),
  );
  return [
    ...Object.keys(config.resources).map((name) => ({ kind: 'resource' as const, name })),
    ...Object.keys(config.plans).map((name) => ({ kind: 'plan' as const, name })),
    ...entities.map((name) => ({ kind: 'entity' as const, name })),
  ];
}

/** A limit as the model sees it. */
export type ModelLimit =
  | {
      readonly kind: 'bucket';
      readonly name: string;
      readonly metric: string;
      /** Units per millisecond. */
      readonly ratePerMs: number;
      readonly burst: number;
      readonly shadow: boolean;
    }
  | {
      readonly kind: 'quota';
      readonly name: string;
      readonly metric: string;
      readonly limit: number;
      readonly alerts: readonly number[];
      readonly shadow: boolean;
    };

/** One limit on one table item: `pk|sk` and the limit's name identify a bucket. */
export interface Charged {
  /** `pk|sk` of the item, as in the table. */
  readonly item: string;
  readonly limit: ModelLimit;
}

const PERIOD_MS = { second: 1_000, minute: 60_000 } as const;

function modelLimit(limit: SoakLimit): ModelLimit {
  if (limit.window) {
    return {
      kind: 'quota',
      name: limit.name,
      metric: limit.metric,
      limit: limit.limit,
      alerts: limit.alerts ?? [],
      shadow: limit.mode === 'shadow',
    };
  }
  return {
    kind: 'bucket',
    name: limit.name,
    metric: limit.metric,
    ratePerMs: limit.limit / PERIOD_MS[limit.per ?? 'minute'],
    burst: limit.burst ?? limit.limit,
    shadow: limit.mode === 'shadow',
  };
}

/**
 * The limits an acquire for `entity` and `resource` meets, each on its item: the entity's plan
 * (or `default`) with its own limits replacing the plan's of the same name, each ancestor's own
 * plan and limits at its own items, and the resource's limits. A limit without a resource is on
 * the entity's shared item (`*`); one for a resource on the (entity, resource) item.
 */
export function chargedLimits(config: SoakConfig, entity: string, resource: string): Charged[] {
  const out: Charged[] = [];
  let id: string | undefined = entity;
  for (let depth = 0; id !== undefined; depth++) {
    const record: SoakConfig['entities'][string] | undefined = config.entities[id];
    const planName = record?.plan ?? (depth === 0 ? 'default' : undefined);
    const plan = planName ? config.plans[planName] : undefined;
    const byName = new Map<string, SoakLimit>();
    const pick = (limits: readonly SoakLimit[] | undefined) => {
      const own = new Map<string, SoakLimit>();
      for (const limit of limits ?? []) {
        if (limit.resource !== undefined && limit.resource !== resource) continue;
        const seen = own.get(limit.name);
        if (!seen || (seen.resource === undefined && limit.resource !== undefined))
          own.set(limit.name, limit);
      }
      for (const [name, limit] of own) byName.set(name, limit);
    };
    pick(plan?.limits);
    pick(record?.limits);
    for (const limit of byName.values()) {
      const sk = limit.resource === undefined ? '*' : resource;
      out.push({ item: `entity#${id}|${sk}`, limit: modelLimit(limit) });
    }
    id = record?.parent;
  }
  for (const limit of config.resources[resource]?.limits ?? [])
    out.push({ item: `resource#${resource}|*`, limit: modelLimit(limit) });
  return out;
}

/** The entity and its ancestors: whom usage history counts a lease for. */
export function chainOf(config: SoakConfig, entity: string): string[] {
  const chain: string[] = [];
  for (let id: string | undefined = entity; id !== undefined; id = config.entities[id]?.parent)
    chain.push(id);
  return chain;
}
