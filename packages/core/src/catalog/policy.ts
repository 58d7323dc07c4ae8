/**
 * Stored configuration — plans, entities, resources, settings — and how an acquire resolves it
 * into the engine's scope checks: entity → plan + overrides → ancestors → resource-wide limits,
 * plus inline limits, which can only add.
 *
 * The documents' schemas are in documents.ts.
 */

import { leaseRoom } from '../engine/decision.js';
import {
  type Limit,
  type LimitInput,
  normalizeLimit,
  parseLimits,
  type Usage,
} from '../engine/limits.js';
import type { ScopeCheck } from '../engine/types.js';
import type { UsageContext } from '../engine/usage-context.js';
import { PolicyRefusal, ValidationError } from '../errors.js';
import { own } from '../names.js';
import { itemKeys } from '../store/schema.js';
import { checkCallers } from './callers.js';
import type {
  EntityConfig,
  PlanConfig,
  PlanLimitInput,
  ResourceConfig,
  SettingsConfig,
} from './documents.js';
import { forBatch, type Price, toPrice } from './price.js';

/** Deepest hierarchy, counting the entity itself: key → project → org is 3. */
export const MAX_DEPTH = 8;

/** Whether `resource` matches a pattern (exact, or prefix before a trailing `*`). */
export function matchesResource(pattern: string, resource: string): boolean {
  return pattern.endsWith('*') ? resource.startsWith(pattern.slice(0, -1)) : pattern === resource;
}

/** How specific a pattern is: exact beats any prefix, a longer prefix beats a shorter one. */
function specificity(pattern: string | undefined): number {
  if (pattern === undefined) return -1;
  return pattern.endsWith('*') ? pattern.length - 1 : Number.MAX_SAFE_INTEGER;
}

/** The limits that apply to `resource`, by name: the most specific pattern of each name wins. */
function limitsFor(
  limits: readonly PlanLimitInput[] | undefined,
  resource: string,
): Map<string, PlanLimitInput> {
  const chosen = new Map<string, PlanLimitInput>();
  for (const limit of limits ?? []) {
    if (limit.resource !== undefined && !matchesResource(limit.resource, resource)) continue;
    const current = chosen.get(limit.name);
    if (!current || specificity(limit.resource) > specificity(current.resource)) {
      chosen.set(limit.name, limit);
    }
  }
  return chosen;
}

/** A stored limit with the revision of the document that defines it. */
interface Sourced {
  readonly limit: PlanLimitInput;
  readonly revision: number;
}

function normalized(limits: Iterable<Sourced>, alerts: readonly number[] | undefined): Limit[] {
  return [...limits].map(({ limit: { resource: _pattern, ...limit }, revision }) =>
    withRevision(normalizeLimit(limit, alerts), revision),
  );
}

/** A bucket remembers which stored definition it came from (see gcra.ts); a quota needs not. */
const withRevision = (limit: Limit, revision: number | undefined): Limit =>
  limit.kind === 'bucket' && revision ? { ...limit, revision } : limit;

/** A stored document with when it was last written (epoch ms), if known. */
export type Revised<T> = T & { readonly revision?: number };

/** Where an acquire reads its configuration from (a cache in front of the table). */
export interface ConfigSource {
  plan(name: string): Promise<Revised<PlanConfig> | undefined>;
  entity(id: string): Promise<Revised<EntityConfig> | undefined>;
  resource(name: string): Promise<Revised<ResourceConfig> | undefined>;
  settings(): Promise<SettingsConfig>;
  /**
   * The same configuration read through to the table (and refreshing any cache): used once when
   * what was read does not fit together, e.g. a cached parent that has since moved.
   */
  fresh?(): ConfigSource;
}

/** What an acquire or available asks for, before configuration. */
export interface PolicyRequest {
  readonly entity: string;
  readonly resource: string;
  readonly usage: Usage;
  readonly inline?: readonly LimitInput[];
  readonly priority?: number;
  /** A batch call: its price is the resource's less the batch discount. */
  readonly batch?: boolean;
  /** Who asks (an IAM principal ARN), checked against the hierarchy's `callers`. */
  readonly principal?: string | undefined;
}

/** The decision to hand the engine: scopes, priority, and the price that derives cost. */
export interface Policy {
  readonly checks: ScopeCheck[];
  readonly priority?: number;
  readonly price?: Price;
  /** Whom usage history counts the call for: the entity and its ancestors. */
  readonly context: UsageContext;
  /**
   * Whether the stored limits alone fit one lease: when they do not, an acquire is refused as
   * the configuration's fault (409 `configuration_invalid`), not the request's.
   */
  readonly storedFits: boolean;
}

const sameLimit = (a: Limit, b: Limit) =>
  JSON.stringify({ ...a, revision: 0 }) === JSON.stringify({ ...b, revision: 0 });

/** Stored configuration that does not fit together (a cycle, a missing parent or plan). */
class Inconsistent extends Error {}

/**
 * Resolves stored configuration and inline limits into one multi-scope decision.
 * Throws {@link PolicyRefusal} for a configuration refusal and {@link ValidationError} for
 * inline limits that would replace stored ones.
 *
 * @example
 * const policies = new CachedConfigSource({ store });
 * const usage = { input_tokens: 1_500, output_tokens: 500 };
 * const policy = await resolvePolicy(policies, { entity: 'key-123', resource: 'gpt-4o', usage });
 * const result = await limiter.acquire({ checks: policy.checks, usage, price: policy.price });
 */
export function resolvePolicy(source: ConfigSource, request: PolicyRequest): Promise<Policy> {
  return consistently(source, (from) => resolveWith(from, request));
}

/**
 * Refuses (403 `caller_not_allowed`) a principal that the `callers` of the entity or an ancestor
 * does not match, as they are now: the check of the routes that resolve no policy (usage
 * history; adjust and release, for the lease's entity).
 */
export function authorizeCaller(
  source: ConfigSource,
  entity: string,
  principal: string | undefined,
): Promise<void> {
  return consistently(source, async (from) => {
    const chain = await chainOf(from, entity, await from.entity(entity));
    checkCallers(callersOf(chain), entity, principal);
  });
}

/** Runs `read`; if what it read does not fit together, once more through to the table. */
async function consistently<T>(
  source: ConfigSource,
  read: (source: ConfigSource) => Promise<T>,
): Promise<T> {
  try {
    return await read(source);
  } catch (error) {
    if (!(error instanceof Inconsistent)) throw error;
    // A cache can hold documents from before and after a change: read them again once.
    try {
      if (source.fresh) return await read(source.fresh());
      throw error;
    } catch (again) {
      if (!(again instanceof Inconsistent)) throw again;
      throw new PolicyRefusal('configuration_invalid', again.message);
    }
  }
}

/**
 * The fallbacks the entity's own plan names for `resource` (none when it names none): the
 * resources to try, in order, when `resource` refuses. Its reads (the entity, its plan) are
 * ones {@link resolvePolicy} makes too: through a cache, run the two together.
 */
export async function planFallbacks(
  source: ConfigSource,
  entity: string,
  resource: string,
): Promise<readonly string[]> {
  const record = await source.entity(entity);
  const plan = await source.plan(record?.plan ?? 'default');
  const fallbacks = plan?.fallbacks;
  return own(fallbacks, resource) ?? [];
}

type Chain = { id: string; config: Revised<EntityConfig> | undefined }[];

/** The entity, then its ancestors (parents are checked for cycles when written). */
async function chainOf(
  source: ConfigSource,
  entity: string,
  record: Revised<EntityConfig> | undefined,
): Promise<Chain> {
  const chain: Chain = [{ id: entity, config: record }];
  for (let parent = record?.parent; parent !== undefined; ) {
    if (chain.some((c) => c.id === parent)) {
      throw new Inconsistent(`the hierarchy above ${entity} has a cycle at ${parent}`);
    }
    if (chain.length >= MAX_DEPTH) {
      throw new Inconsistent(`the hierarchy above ${entity} is deeper than ${MAX_DEPTH} levels`);
    }
    const config = await source.entity(parent);
    if (!config) throw new Inconsistent(`${parent}, above ${entity}, does not exist`);
    chain.push({ id: parent, config });
    parent = config.parent;
  }
  return chain;
}

const callersOf = (chain: Chain) =>
  chain.flatMap(({ config }) => (config?.callers ? [config.callers] : []));

async function resolveWith(source: ConfigSource, request: PolicyRequest): Promise<Policy> {
  const { entity, resource } = request;
  const [record, settings, resourceConfig] = await Promise.all([
    source.entity(entity),
    source.settings(),
    source.resource(resource),
  ]);
  if (!record && settings.unknown_entities === 'refuse') {
    throw new PolicyRefusal('unknown_entity', `entity ${entity} is not registered`);
  }
  const chain = await chainOf(source, entity, record);
  // Who may ask comes first: a caller refused learns nothing else about the entity.
  checkCallers(callersOf(chain), entity, request.principal);
  const plans = await plansOf(source, entity, chain);
  const { checks, own } = hierarchyChecks(request, chain, plans, settings);
  if (resourceConfig?.limits?.length) {
    checks.push({
      scope: 'resource',
      key: itemKeys.resourceBucket(resource),
      limits: resourceConfig.limits.map((l) =>
        withRevision(normalizeLimit(l, settings.budget_alerts), resourceConfig.revision),
      ),
    });
  }
  const context = {
    resource,
    scopes: chain.map(({ id, config }) => ({
      entity: id,
      timezone: config?.timezone ?? settings.timezone ?? 'UTC',
    })),
  };
  const storedFits = leaseRoom(
    checks.filter((check) => check.limits.length > 0),
    {},
    context,
  ).fits;
  addInline(request, checks, own, settings);
  const active = checks.filter((check) => check.limits.length > 0);
  const price = priceOf(request, active, resourceConfig, settings);
  // The plan's priority is its share of capacity it shares with other callers (ancestors,
  // the resource); its own limits hold nothing back. The request's priority applies everywhere.
  const planPriority = plans[0]?.priority;
  return {
    checks:
      planPriority === undefined
        ? active
        : active.map((c) => (c.scope === 'entity' ? c : { ...c, priority: planPriority })),
    ...(request.priority !== undefined ? { priority: request.priority } : {}),
    ...(price ? { price } : {}),
    context,
    storedFits,
  };
}

/**
 * Each entity's plan, nearest first: the caller without a plan gets the plan named `default`,
 * if there is one; a plan an entity names must exist (its limits and allowed resources are not
 * optional).
 */
function plansOf(
  source: ConfigSource,
  entity: string,
  chain: Chain,
): Promise<(Revised<PlanConfig> | undefined)[]> {
  return Promise.all(
    chain.map(async ({ id, config }) => {
      if (config?.plan === undefined) return id === entity ? source.plan('default') : undefined;
      const plan = await source.plan(config.plan);
      if (!plan) throw new Inconsistent(`plan ${config.plan} of ${id} does not exist`);
      return plan;
    }),
  );
}

/**
 * The scopes of the entity and its ancestors: each one's plan and own limits, at its own scope;
 * refusals by configuration (disabled, resource not allowed, context too large) on the way.
 * `own` is the index of the entity's own entity-resource item, where inline limits go.
 */
function hierarchyChecks(
  request: PolicyRequest,
  chain: Chain,
  plans: readonly (Revised<PlanConfig> | undefined)[],
  settings: SettingsConfig,
): { checks: ScopeCheck[]; own: number } {
  const { resource } = request;
  const checks: ScopeCheck[] = [];
  let own = 0;
  let maxInput = Number.POSITIVE_INFINITY;
  chain.forEach(({ id, config }, depth) => {
    const plan = plans[depth];
    refuseByConfiguration(request, id, depth, config, plan);
    if (plan?.max_input_tokens !== undefined) maxInput = Math.min(maxInput, plan.max_input_tokens);
    const { shared, perResource } = scopeLimits(resource, config, plan, settings);
    const scope = depth === 0 ? 'entity' : `parent:${id}`;
    if (depth === 0) own = checks.length;
    checks.push({ scope, key: itemKeys.entityBucket(id, resource), limits: perResource });
    if (shared.length > 0) checks.push({ scope, key: itemKeys.entityWide(id), limits: shared });
  });
  const input = request.usage.input_tokens ?? 0;
  if (input > maxInput) {
    throw new PolicyRefusal(
      'context_too_large',
      `input_tokens ${input} is above this plan's max_input_tokens ${maxInput}`,
    );
  }
  return { checks, own };
}

/** Refuses an entity (or an ancestor) that is disabled, or whose plan does not allow the resource. */
function refuseByConfiguration(
  request: PolicyRequest,
  id: string,
  depth: number,
  config: Revised<EntityConfig> | undefined,
  plan: Revised<PlanConfig> | undefined,
): void {
  const { entity, resource } = request;
  if (config?.disabled) {
    throw new PolicyRefusal(
      'entity_disabled',
      depth === 0 ? `entity ${id} is disabled` : `entity ${entity}'s ancestor ${id} is disabled`,
    );
  }
  const allowed = plan?.allowed_resources;
  if (allowed && !allowed.some((pattern) => matchesResource(pattern, resource))) {
    throw new PolicyRefusal(
      'resource_not_allowed',
      `${resource} is not allowed for ${depth === 0 ? entity : `${entity} (through ${id})`}`,
    );
  }
}

/**
 * One entity's limits for a resource: its plan's, replaced by its own of the same name. A limit
 * with no resource pattern is shared by all the entity's resources (one item); one with a
 * pattern counts each matching resource on its own (the entity-resource item). Which definition
 * applies depends on the entity (its plan, its overrides) and the plan: a change to either is a
 * newer revision, including removing an override.
 */
function scopeLimits(
  resource: string,
  config: Revised<EntityConfig> | undefined,
  plan: Revised<PlanConfig> | undefined,
  settings: SettingsConfig,
): { shared: Limit[]; perResource: Limit[] } {
  const revision = Math.max(plan?.revision ?? 0, config?.revision ?? 0);
  const byName = new Map<string, Sourced>();
  for (const [name, limit] of limitsFor(plan?.limits, resource))
    byName.set(name, { limit, revision });
  for (const [name, limit] of limitsFor(config?.limits, resource))
    byName.set(name, { limit, revision });
  const winners = [...byName.values()];
  const alerts = settings.budget_alerts;
  return {
    shared: normalized(
      winners.filter((w) => w.limit.resource === undefined),
      alerts,
    ),
    perResource: normalized(
      winners.filter((w) => w.limit.resource !== undefined),
      alerts,
    ),
  };
}

/** Inline limits add to the entity scope; a stored limit of the same name cannot be replaced. */
function addInline(
  request: PolicyRequest,
  checks: ScopeCheck[],
  own: number,
  settings: SettingsConfig,
): void {
  const stored = checks.filter((c) => c.scope === 'entity').flatMap((c) => c.limits);
  const inline = parseLimits(request.inline ?? [], 'limits', settings.budget_alerts);
  const added: Limit[] = [];
  inline.forEach((limit, i) => {
    const same = stored.find((l) => l.name === limit.name);
    if (!same) added.push(limit);
    else if (!sameLimit(same, limit)) {
      throw new ValidationError(
        `limits[${i}].name`,
        `"${limit.name}" is a stored limit of ${request.entity}; inline limits can only add new names`,
      );
    }
  });
  const target = checks[own] as ScopeCheck;
  checks[own] = { ...target, limits: [...target.limits, ...added] };
}

/** The price cost is derived with; a cost limit with no price to go by is refused. */
function priceOf(
  request: PolicyRequest,
  active: readonly ScopeCheck[],
  resourceConfig: Revised<ResourceConfig> | undefined,
  settings: SettingsConfig,
): Price | undefined {
  const priceInput = resourceConfig?.price ?? settings.default_price;
  const listed = priceInput ? toPrice(priceInput) : undefined;
  const price = listed && request.batch ? forBatch(listed) : listed;
  const costLimited = active.some((c) => c.limits.some((l) => l.metric === 'cost_micro_usd'));
  if (costLimited && !price && request.usage.cost_micro_usd === undefined) {
    throw new PolicyRefusal(
      'price_unknown',
      `a cost limit applies but ${request.resource} has no price: set one, or a default price`,
    );
  }
  return price;
}
