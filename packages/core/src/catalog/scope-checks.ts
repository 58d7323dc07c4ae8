/**
 * The steps of resolving a policy (policy.ts) that turn the stored documents it read into the
 * engine's scope checks: which limits each scope of the hierarchy gets (its plan's, replaced by
 * its own of the same name, the most specific resource pattern of each name winning, each with
 * the revision of its definition), the refusals by configuration on the way (disabled, resource
 * not allowed, context too large), the resource-wide scope, the inline limits, which can only
 * add, and the price that cost is derived with.
 */

import { type Limit, normalizeLimit, parseLimits } from '../engine/limits.js';
import type { ScopeCheck } from '../engine/types.js';
import { PolicyRefusal, ValidationError } from '../errors.js';
import { itemKeys } from '../store/schema.js';
import type {
  EntityConfig,
  PlanConfig,
  PlanLimitInput,
  ResourceConfig,
  SettingsConfig,
} from './documents.js';
import type { Chain, PolicyRequest, Revised } from './policy.js';
import { forBatch, type Price, toPrice } from './price.js';

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
export function limitsFor(
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

/** A bucket remembers which stored definition it came from (see gcra.ts); a quota needs not. */
const withRevision = (limit: Limit, revision: number | undefined): Limit =>
  limit.kind === 'bucket' && revision ? { ...limit, revision } : limit;

/** The limits as the engine takes them: without their patterns, with their revisions. */
function normalized(limits: Iterable<Sourced>, alerts: readonly number[] | undefined): Limit[] {
  return [...limits].map(({ limit: { resource: _pattern, ...limit }, revision }) =>
    withRevision(normalizeLimit(limit, alerts), revision),
  );
}

/**
 * The scopes of the entity and its ancestors: each one's plan and own limits, at its own scope;
 * refusals by configuration (disabled, resource not allowed, context too large) on the way.
 * `own` is the index of the entity's own entity-resource item, where inline limits go.
 * `readAt` tells when the plans and entities read were read, where the source knows it.
 */
export function hierarchyChecks(
  request: PolicyRequest,
  chain: Chain,
  plans: readonly (Revised<PlanConfig> | undefined)[],
  settings: SettingsConfig,
  readAt: ReadAt = () => undefined,
): { checks: ScopeCheck[]; own: number } {
  const { resource } = request;
  const checks: ScopeCheck[] = [];
  let own = 0;
  let maxInput = Number.POSITIVE_INFINITY;
  chain.forEach(({ id, config }, depth) => {
    const plan = plans[depth];
    refuseByConfiguration(request, id, depth, config, plan);
    if (plan?.max_input_tokens !== undefined) maxInput = Math.min(maxInput, plan.max_input_tokens);
    const revisions = revisionsOf(id, depth, config, plan, readAt);
    const { shared, perResource } = scopeLimits(resource, config, plan, settings, revisions);
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

/** When a plan or an entity was read, if known (epoch ms). */
type ReadAt = (kind: 'plan' | 'entity', name: string) => number | undefined;

/** The revisions an entity's definitions carry: those its plan gives, and its own overrides. */
interface Revisions {
  readonly fromPlan: number;
  readonly own: number;
}

/**
 * Which definition applies depends on the entity (its plan, its overrides) and the plan: a
 * change to either is a newer revision, including removing an override, and deleting the entity
 * (an entity without a record is as new as the read that found none). A plan's definitions are
 * known only as of the plan's read, however new the entity read beside it: an entity edited, or
 * found absent, after a plan change must not lend a plan read before the change a revision after
 * it (the old definition would pass for the newer, and convert the items back to it).
 */
function revisionsOf(
  id: string,
  depth: number,
  config: Revised<EntityConfig> | undefined,
  plan: Revised<PlanConfig> | undefined,
  readAt: ReadAt,
): Revisions {
  const planRevision = plan?.revision ?? 0;
  const entity = config ? (config.revision ?? 0) : (readAt('entity', id) ?? 0);
  const planName = config?.plan ?? (depth === 0 ? 'default' : undefined);
  const planRead = planName === undefined ? undefined : readAt('plan', planName);
  // A plan whose read time is unknown: as before, the entity's revision (none if absent).
  const known = planRead ?? (config ? entity : 0);
  return {
    fromPlan: Math.max(planRevision, Math.min(entity, known)),
    own: Math.max(planRevision, config?.revision ?? 0),
  };
}

/**
 * One entity's limits for a resource: its plan's, replaced by its own of the same name, each at
 * its revision (see {@link revisionsOf}). A limit with no resource pattern is shared by all the
 * entity's resources (one item); one with a pattern counts each matching resource on its own
 * (the entity-resource item).
 */
function scopeLimits(
  resource: string,
  config: Revised<EntityConfig> | undefined,
  plan: Revised<PlanConfig> | undefined,
  settings: SettingsConfig,
  revisions: Revisions,
): { shared: Limit[]; perResource: Limit[] } {
  const byName = new Map<string, Sourced>();
  for (const [name, limit] of limitsFor(plan?.limits, resource))
    byName.set(name, { limit, revision: revisions.fromPlan });
  for (const [name, limit] of limitsFor(config?.limits, resource))
    byName.set(name, { limit, revision: revisions.own });
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

/** The resource-wide scope: the resource's own limits, shared by every entity; none without. */
export function resourceCheck(
  resource: string,
  config: Revised<ResourceConfig> | undefined,
  settings: SettingsConfig,
): ScopeCheck | undefined {
  if (!config?.limits?.length) return undefined;
  return {
    scope: 'resource',
    key: itemKeys.resourceBucket(resource),
    limits: config.limits.map((l) =>
      withRevision(normalizeLimit(l, settings.budget_alerts), config.revision),
    ),
  };
}

/** Whether an inline limit repeats a stored one exactly (their revisions aside). */
const sameLimit = (a: Limit, b: Limit) =>
  JSON.stringify({ ...a, revision: 0 }) === JSON.stringify({ ...b, revision: 0 });

/** Inline limits add to the entity scope; a stored limit of the same name cannot be replaced. */
export function addInline(
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
export function priceOf(
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
