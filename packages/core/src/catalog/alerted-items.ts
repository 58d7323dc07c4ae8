/**
 * Budget alerts and sharded items, as stored documents decide them. An alert is judged on one
 * item, and an item that an enforced limit may shard (`shards` or `max_shards` above 1) holds
 * only a share of every quota on it: a quota with `alerts` may not land on such an item (400
 * naming its `alerts`). Which limits land on one item follows the policy (scope-checks.ts):
 *
 * - a resource's limits: its one resource-wide item;
 * - an entity's limits without `resource` (its plan's, and its own, which replace the plan's of
 *   the same name): its entity-wide item, one for all its resources, so a limit that shards it
 *   for one resource shards it for every one;
 * - those with a pattern: one item per entity and resource, holding of each name the most
 *   specific pattern that matches the resource (a name with a matching pattern leaves its
 *   unpatterned limit out of the entity-wide item for that resource).
 *
 * What is only known when a call comes (inline limits beside stored ones, a plan changed after
 * the entities on it were stored, documents stored before this rule) the engine guards: a scope
 * that is or may be sharded records no alerts (`alertsOff` in engine/consume.ts).
 */

import { alertsOnShardedItem, hasAlerts, shardsItsItem } from '../engine/limits.js';
import { ValidationError } from '../errors.js';
import type { PlanLimitInput } from './documents.js';
import { limitsFor } from './scope-checks.js';

/** The limits of one document, as the policy stacks them: a plan's, then an entity's own. */
export interface LimitLayer {
  readonly limits: readonly PlanLimitInput[];
  /**
   * Where the document being checked names these limits (`limits`, `plans.pro.limits`); none
   * for a layer read from elsewhere (an entity's plan), which is not this document's to refuse.
   */
  readonly field?: string;
  /** What the layer is, for messages (`plan pro`). */
  readonly source?: string;
}

/** A limit on an item: which layer defines it, at which index. */
interface Placed {
  readonly limit: PlanLimitInput;
  readonly layer: number;
  readonly index: number;
}

/** No identifier holds a space: a resource that matches a prefix and nothing longer. */
const ELSEWHERE = ' ';

/**
 * A resource for every set of patterns that can match one (the items differ only by that set):
 * each exact pattern, each prefix followed by nothing another pattern names, and any other.
 */
function resources(layers: readonly LimitLayer[]): string[] {
  const found = new Set([ELSEWHERE]);
  for (const { limits } of layers)
    for (const { resource } of limits)
      if (resource !== undefined)
        found.add(resource.endsWith('*') ? `${resource.slice(0, -1)}${ELSEWHERE}` : resource);
  return [...found];
}

/** The limits that apply to `resource`, by name: a later layer's replace an earlier layer's. */
function limitsAt(layers: readonly LimitLayer[], resource: string): Placed[] {
  const byName = new Map<string, Placed>();
  layers.forEach(({ limits }, layer) => {
    for (const limit of limitsFor(limits, resource).values())
      byName.set(limit.name, { limit, layer, index: limits.indexOf(limit) });
  });
  return [...byName.values()];
}

/** Every quota with alerts beside a limit that may shard its item, as [quota, sharder]. */
function conflicts(layers: readonly LimitLayer[]): [Placed, Placed][] {
  const found: [Placed, Placed][] = [];
  const pairs = (onItem: readonly Placed[]) => {
    for (const quota of onItem.filter((p) => hasAlerts(p.limit)))
      for (const sharder of onItem.filter((p) => shardsItsItem(p.limit)))
        if (sharder.limit !== quota.limit) found.push([quota, sharder]); // (a sharded quota's own: checkSharding)
  };
  // The entity-wide item holds, over all resources, every unpatterned limit that applies to one.
  const wide = new Map<PlanLimitInput, Placed>();
  for (const resource of resources(layers)) {
    const placed = limitsAt(layers, resource);
    pairs(placed.filter((p) => p.limit.resource !== undefined));
    for (const p of placed) if (p.limit.resource === undefined) wide.set(p.limit, p);
  }
  pairs([...wide.values()]);
  return found;
}

/**
 * Refuses (400) a quota with `alerts` that lands on an item some enforced limit may shard,
 * naming the quota's `alerts` in the layer being checked; when the quota is another layer's
 * (an entity's plan), the limit of this layer that shards its item is named instead. Conflicts
 * among layers read from elsewhere are left to the engine.
 */
export function checkAlertedItems(layers: readonly LimitLayer[]): void {
  let refusal: { order: number; error: ValidationError } | undefined;
  for (const [quota, sharder] of conflicts(layers)) {
    const found = refusalOf(layers, quota, sharder);
    if (found && (!refusal || found.order < refusal.order)) refusal = found;
  }
  if (refusal) throw refusal.error;
}

function refusalOf(
  layers: readonly LimitLayer[],
  quota: Placed,
  sharder: Placed,
): { order: number; error: ValidationError } | undefined {
  const [atQuota, atSharder] = [layers[quota.layer], layers[sharder.layer]];
  if (atQuota?.field !== undefined) {
    const of = atSharder?.field === undefined && atSharder?.source ? ` of ${atSharder.source}` : '';
    return {
      order: quota.index,
      error: new ValidationError(
        `${atQuota.field}[${quota.index}].alerts`,
        alertsOnShardedItem(sharder.limit, of),
      ),
    };
  }
  if (atSharder?.field === undefined) return undefined;
  const asked = (sharder.limit.shards ?? 1) > 1 ? 'shards' : 'max_shards';
  const owner = atQuota?.source ? `${atQuota.source}'s ` : '';
  return {
    order: Number.MAX_SAFE_INTEGER / 2 + sharder.index,
    error: new ValidationError(
      `${atSharder.field}[${sharder.index}].${asked}`,
      `would shard the item where ${owner}quota "${quota.limit.name}" has budget alerts, which are judged on one item: override that quota here without alerts, or shard nothing it lands on`,
    ),
  };
}
