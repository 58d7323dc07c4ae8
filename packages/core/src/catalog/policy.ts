/**
 * How an acquire resolves stored configuration — plans, entities, resources, settings — into the
 * engine's scope checks: entity → plan + overrides → ancestors → resource-wide limits, plus
 * inline limits, which can only add.
 *
 * This module reads what a request needs (the entity, its ancestors, their plans, the resource,
 * the settings), consistently: when documents read through a cache do not fit together, once more
 * through to the table. It then assembles the decision from the steps in scope-checks.ts, which
 * turn those documents into each scope's limits, refusals, inline limits and the price. The
 * documents' schemas are in documents.ts.
 */

import { leaseRoom } from '../engine/decision.js';
import type { LimitInput, Usage } from '../engine/limits.js';
import type { ScopeCheck } from '../engine/types.js';
import type { UsageContext } from '../engine/usage-context.js';
import { PolicyRefusal } from '../errors.js';
import { own } from '../names.js';
import { checkCallers } from './callers.js';
import type { EntityConfig, PlanConfig, ResourceConfig, SettingsConfig } from './documents.js';
import type { Price } from './price.js';
import { addInline, hierarchyChecks, priceOf, resourceCheck } from './scope-checks.js';

// Exported from here as well: documents.ts checks patterns with it.

/** Deepest hierarchy, counting the entity itself: key → project → org is 3. */
export const MAX_DEPTH = 8;

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
  /**
   * When the answer this source gives now for a plan or an entity was read (epoch ms: when that
   * read was sent), if known: definitions derived from a plan are known as of its read, and an
   * entity without a record is as new as the read that found none (see scope-checks.ts).
   */
  readAt?(kind: 'plan' | 'entity', name: string): number | undefined;
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

/** The entity, then its ancestors, each with its document (none for an unregistered entity). */
export type Chain = { id: string; config: Revised<EntityConfig> | undefined }[];

/**
 * The entity, then its ancestors (parents are checked for cycles when written); `found` hears of
 * each as soon as it is read.
 */
async function chainOf(
  source: ConfigSource,
  entity: string,
  record: Revised<EntityConfig> | undefined,
  found: (link: Chain[number]) => void = () => {},
): Promise<Chain> {
  const chain: Chain = [{ id: entity, config: record }];
  found({ id: entity, config: record });
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
    found({ id: parent, config });
    parent = config.parent;
  }
  return chain;
}

const callersOf = (chain: Chain) =>
  chain.flatMap(({ config }) => (config?.callers ? [config.callers] : []));

/** One read of the configuration, assembled into the decision: see {@link resolvePolicy}. */
async function resolveWith(source: ConfigSource, request: PolicyRequest): Promise<Policy> {
  const { entity, resource } = request;
  // The plan an entity without one gets, read beside the entity: most callers name no plan (or
  // are not registered), so a cold cache needs no second round for it. Read through the cache,
  // it is read once, and by an entity that names another plan, wasted once.
  source.plan('default').catch(() => {}); // a failed read is not kept: read again if needed
  const [record, settings, resourceConfig] = await Promise.all([
    source.entity(entity),
    source.settings(),
    source.resource(resource),
  ]);
  if (!record && settings.unknown_entities === 'refuse') {
    throw new PolicyRefusal('unknown_entity', `entity ${entity} is not registered`);
  }
  // Each entity's plan is read as soon as the entity is (beside the read of its parent), so a
  // cold cache costs one round trip a level of the hierarchy, not one more for the plans.
  const planReads: Promise<Revised<PlanConfig> | undefined>[] = [];
  const chain = await chainOf(source, entity, record, (link) => {
    const reading = planOf(source, entity, link);
    reading.catch(() => {}); // awaited below, unless the chain or the callers refuse first
    planReads.push(reading);
  });
  // Who may ask comes first: a caller refused learns nothing else about the entity.
  checkCallers(callersOf(chain), entity, request.principal);
  const plans = await Promise.all(planReads);
  const readAt = (kind: 'plan' | 'entity', name: string) => source.readAt?.(kind, name);
  const { checks, own } = hierarchyChecks(request, chain, plans, settings, readAt);
  const resourceWide = resourceCheck(resource, resourceConfig, settings);
  if (resourceWide) checks.push(resourceWide);
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
 * An entity's plan: the caller without a plan gets the plan named `default`, if there is one; a
 * plan an entity names must exist (its limits and allowed resources are not optional).
 */
async function planOf(
  source: ConfigSource,
  entity: string,
  { id, config }: Chain[number],
): Promise<Revised<PlanConfig> | undefined> {
  if (config?.plan === undefined) return id === entity ? source.plan('default') : undefined;
  const plan = await source.plan(config.plan);
  if (!plan) throw new Inconsistent(`plan ${config.plan} of ${id} does not exist`);
  return plan;
}
