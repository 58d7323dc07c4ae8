/**
 * Budget alerts: a calendar quota may name thresholds (shares of its limit). The acquire that
 * writes such a quota records its limit and thresholds beside its window; the aggregator sees
 * each change of the item with its old and new image.
 *
 * Alerts follow the budget in force when the usage is counted: threshold t of a quota with limit
 * B is reached when the window's `used`, counted under B, reaches its level ceil(t·B) (exactly:
 * see {@link thresholdLevel}). A change fires t when its new image is at or past that level and
 * its old image was not already at or past the same level in the same window: a crossing, a new
 * window, or a new definition. So a threshold that a lowered budget puts below what is already
 * used fires on the next change counted under that budget.
 *
 * Exactly one alert per (item, limit, window, threshold, level). A threshold's first alert in a
 * window is created with a condition that it does not exist, and records the highest level fired.
 * A later firing must be at a higher level (the budget was raised above the level it last fired
 * at): its own alert item, created in one transaction with the raise of that highest level,
 * conditional on it being lower. A level at or below it never fires again (a lowered budget).
 * So concurrent crossings, a crossing after a refund, a replayed batch and two readers of one
 * stream all find the firing there, and a change of an item already past its thresholds under
 * the same budget writes nothing. Each reader takes an item's changes in stream order, as
 * DynamoDB Streams delivers them: a batch first seen in another order may fire a level that a
 * lowered budget would have passed over (still once).
 *
 * Whoever created an alert sends it; a send that failed leaves it unclaimed, so the record's next
 * delivery sends it. A record that finds the alert claimed and not yet sent fails its batch (in
 * AWS), which comes back until the alert is sent or the claim lapses after {@link CLAIM_MS} (its
 * sender died mid-send). Locally (`keep`) a record that finds it claimed by another sender goes
 * on, and that alert is taken over by this sender once the claim lapses ({@link sendLapsed}):
 * its sender may have stopped, or be slow to read its batch again. Only a sender that dies after
 * the event bus took the alert and before marking it sent can cause a second event, a minute
 * later.
 */

import { sleep } from '../engine/state.js';
import { StoreUnavailableError } from '../errors.js';
import {
  alertAttributes as A,
  bucketAttributes,
  itemAttributes,
  itemKeys,
  shardOf,
  TABLE_SCHEMA,
  usageKeys,
} from '../store/schema.js';
import type { AdminStore, Assignment, ItemKey, ItemState, ItemUpdate } from '../store/types.js';
import { alertedQuota, type Image, reached, thresholdLevel } from './alert-levels.js';
import type { ItemChange } from './facts.js';

/** How budget alert events are named (EventBridge source and detail-type; the webhook's body too). */
export const ALERT_EVENT = { source: 'sluice', detailType: 'Sluice Budget Threshold' } as const;

/** How long a claim to send an alert holds before another sender may take it. */
export const CLAIM_MS = 60_000;

/** A budget threshold crossed: what is sent and listed. */
export interface BudgetAlert {
  /** The entity whose quota it is (null for a resource-wide quota). */
  readonly entity: string | null;
  /** The resource: that of a per-resource or resource-wide quota, null for an entity-wide one. */
  readonly resource: string | null;
  /** The quota's name. */
  readonly limit: string;
  /** Start of the window (ISO 8601). */
  readonly window: string;
  readonly threshold: number;
  /** Used in the window when it was crossed. */
  readonly used: number;
  /** The quota's limit it fired under (the one in force when `used` was counted). */
  readonly limit_value: number;
}

/** Sends one alert; throws if it could not. */
export type AlertSender = (alert: BudgetAlert) => Promise<void>;

/** A threshold reached by one change: the alert it fires, at which level of `used`. */
interface Crossing {
  readonly key: ItemKey;
  readonly level: bigint;
  readonly alert: BudgetAlert;
}

const ALERTS_PREFIX = bucketAttributes.alerts('');
const ENTITY_PREFIX = itemKeys.entityWide('').pk;
const RESOURCE_PREFIX = itemKeys.resourceBucket('').pk;

/**
 * The thresholds one change reaches: at or past their level under the budget of its new image,
 * where its old image was not already at or past that same level in the same window.
 */
export function crossingsOf(change: ItemChange): Crossing[] {
  if (!change.newImage) return [];
  const next: Image = new Map(Object.entries(change.newImage));
  // A shard holds a share of each quota: judged there, an alert would fire per shard at its share
  // (the engine records none on a sharded scope; one recorded before, or split, fires nothing).
  if (shardOf(change.key).index > 0 || next.has(itemAttributes.shards)) return [];
  const old: Image = new Map(Object.entries(change.oldImage ?? {}));
  const out: Crossing[] = [];
  for (const attr of next.keys()) {
    if (!attr.startsWith(ALERTS_PREFIX)) continue;
    const name = attr.slice(ALERTS_PREFIX.length);
    const quota = alertedQuota(next, name);
    if (!quota) continue;
    const before = alertedQuota(old, name);
    for (const threshold of quota.thresholds) {
      const level = thresholdLevel(threshold, quota.limit);
      if (quota.used < level || reached(before, quota.window, threshold, level)) continue;
      out.push({
        key: change.key,
        level,
        alert: alertOf(change.key, name, quota.window, threshold, quota.used, quota.limit),
      });
    }
  }
  return out;
}

function alertOf(
  key: ItemKey,
  limit: string,
  window: bigint,
  threshold: number,
  used: bigint,
  limitValue: bigint,
): BudgetAlert {
  const { pk, sk } = shardOf(key).base; // named by its scope, never by a shard's key (`*#1`)
  const resourceWide = pk.startsWith(RESOURCE_PREFIX);
  return {
    entity: resourceWide ? null : pk.slice(ENTITY_PREFIX.length),
    resource: resourceWide ? pk.slice(RESOURCE_PREFIX.length) : sk === '*' ? null : sk,
    limit,
    window: new Date(Number(window)).toISOString(),
    threshold,
    used: Number(used),
    limit_value: Number(limitValue),
  };
}

/** How {@link recordAlerts} sends. */
export interface SendOptions {
  readonly clock: () => number;
  /** This sender's id: a claim it made is its own to send, however its answer went. */
  readonly claimer: string;
  readonly send?: AlertSender;
  readonly onSendFailure: 'retry' | 'keep';
  readonly onError: (error: unknown) => void;
  /** How long after receiving a batch with crossings its items are read (see {@link stillReached}). */
  readonly settleMs: number;
  /**
   * With `keep`: where an alert found claimed by another sender is kept, to be taken over by
   * {@link sendLapsed} once that claim lapses (its sender may never come back to it).
   */
  readonly left?: Map<string, LeftAlert>;
}

/** An alert left to the sender that claimed it, and when that claim lapses at the latest. */
export interface LeftAlert {
  readonly key: ItemKey;
  readonly alert: BudgetAlert;
  readonly lapsesAtMs: number;
}

/** Records each crossing once and sends the alerts this call created or took over. */
export async function recordAlerts(
  store: AdminStore,
  crossings: readonly Crossing[],
  options: SendOptions,
): Promise<number> {
  await sendLapsed(store, options);
  let created = 0;
  const seen = new Set<string>();
  const standing = new Map<string, Promise<ItemState | undefined>>();
  // A refused acquire's charge is given back one round trip after it lands: read after that.
  if (crossings.length > 0 && options.settleMs > 0) await sleep(options.settleMs);
  for (const crossing of crossings) {
    const { key, level, alert } = crossing;
    const first = usageKeys.alert(alert.window, key, alert.limit, alert.threshold);
    // One batch often reaches one level several times (a refund and a new crossing): once is enough.
    const id = `${first.sk}\n${level}`;
    if (seen.has(id)) continue;
    seen.add(id);
    if (!(await stillReached(store, crossing, standing))) continue;
    const nowMs = options.clock();
    const claim = options.send ? options.claimer : undefined;
    const firing = await fire(store, first, crossing, nowMs, claim);
    if (firing.created) created++;
    if (!options.send) continue;
    if (!firing.created) {
      const taken = await takeOver(store, firing.key, firing.item, nowMs, options.claimer);
      if (taken === 'sent' || taken === 'none') continue;
      if (taken === 'claimed') {
        // Another sender holds it, or died holding it: in AWS the batch comes back until the
        // alert is sent or the claim lapses; locally it is left to the other process until the
        // claim lapses, then taken over (sendLapsed).
        if (options.onSendFailure === 'retry')
          throw new StoreUnavailableError('a budget alert is being sent by another reader');
        options.left?.set(`${firing.key.pk}\n${firing.key.sk}`, {
          key: firing.key,
          alert,
          lapsesAtMs: nowMs + CLAIM_MS + 1,
        });
        continue;
      }
    }
    await deliver(store, firing.key, alert, options.send, options);
  }
  return created;
}

/**
 * Takes over and sends each alert left to another sender whose claim has lapsed (that sender
 * stopped, or its stream reader never came back to the batch): the stream has moved on here, so
 * nothing else would. One still claimed stays left; one sent or gone is forgotten.
 */
export async function sendLapsed(store: AdminStore, options: SendOptions): Promise<void> {
  const { left, send } = options;
  if (!left || !send) return;
  for (const [id, { key, alert, lapsesAtMs }] of left) {
    const nowMs = options.clock();
    if (nowMs < lapsesAtMs) continue;
    left.delete(id); // out of the map while under way: a call meanwhile does not take it twice
    let taken: Awaited<ReturnType<typeof takeOver>>;
    try {
      taken = await takeOver(store, key, undefined, nowMs, options.claimer);
    } catch (error) {
      left.set(id, { key, alert, lapsesAtMs });
      throw error;
    }
    // Claimed again meanwhile (its sender came back to it): left to it for another while.
    if (taken === 'claimed') left.set(id, { key, alert, lapsesAtMs: nowMs + CLAIM_MS + 1 });
    if (taken === 'taken') await deliver(store, key, alert, send, options);
  }
}

/** Sends an alert this sender holds the claim of, and records that it was sent (or released). */
async function deliver(
  store: AdminStore,
  key: ItemKey,
  alert: BudgetAlert,
  send: AlertSender,
  options: SendOptions,
): Promise<void> {
  try {
    await send(alert);
  } catch (error) {
    await afterSend(store, { key, set: [{ attr: A.claimed, value: 0n }] });
    if (options.onSendFailure === 'retry') throw error;
    options.onError(error);
    return;
  }
  await afterSend(store, {
    key,
    set: [{ attr: A.sent, value: new Date(options.clock()).toISOString() }],
  });
}

/**
 * Whether usage still stands at or past a crossing's level as the item is now (read once per
 * item and batch, `settleMs` after the batch came): a charge given back since (an acquire refused
 * by another of its scopes, a lease settled lower) reached nothing. A window since moved on is
 * taken as reached. A give-back held up longer than `settleMs` (DynamoDB throttling it) is not
 * seen, and its charge may still fire the alert.
 */
async function stillReached(
  store: AdminStore,
  { key, level, alert }: Crossing,
  standing: Map<string, Promise<ItemState | undefined>>,
): Promise<boolean> {
  const id = `${key.pk}\n${key.sk}`;
  let reading = standing.get(id);
  if (!reading) {
    reading = store.get(key);
    standing.set(id, reading);
  }
  const item = new Map(Object.entries((await reading) ?? {}));
  const window = item.get(bucketAttributes.window(alert.limit));
  const used = item.get(bucketAttributes.used(alert.limit));
  if (typeof window !== 'bigint' || window !== BigInt(Date.parse(alert.window))) return true;
  return typeof used === 'bigint' && used >= level;
}

/**
 * What a sender records after sending: retried a few times, since another reader's transaction
 * raising the threshold's level may hold the item a moment, and an alert sent but not marked
 * would stay claimed (and be sent again once the claim lapses).
 */
async function afterSend(store: AdminStore, update: ItemUpdate): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await store.update(update);
      return;
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || attempt >= 4) throw error;
      await sleep(Math.random() * 10 * 2 ** attempt);
    }
  }
}

/** Where a crossing's alert is: created now, or found (`item`, when it was read on the way). */
interface Firing {
  readonly key: ItemKey;
  readonly created: boolean;
  readonly item?: ItemState | undefined;
}

/** Transactions that met another writer before {@link fire} gives up (the batch comes back). */
const MAX_ATTEMPTS = 8;

/**
 * Creates the alert of a crossing unless its threshold already fired in the window at this
 * level or a higher one. `first` is the threshold's first alert in the window, which holds the
 * highest level fired; a later firing (a raised budget) is created with the raise of it.
 */
async function fire(
  store: AdminStore,
  first: ItemKey,
  { key, level, alert }: Crossing,
  nowMs: number,
  claimer: string | undefined,
): Promise<Firing> {
  const fields: Assignment[] = [
    { attr: A.detail, value: JSON.stringify(alert) },
    { attr: A.at, value: new Date(nowMs).toISOString() },
    { attr: A.level, value: level },
    ...(claimer
      ? [
          { attr: A.claimed, value: BigInt(nowMs) },
          { attr: A.claimedBy, value: claimer },
        ]
      : []),
  ];
  const later = usageKeys.alert(alert.window, key, alert.limit, alert.threshold, level);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(Math.random() * 10 * 2 ** attempt);
    const made = await store.update({
      key: first,
      set: [...fields, { attr: A.highest, value: level }],
      condition: { absent: TABLE_SCHEMA.partitionKey },
    });
    if (made.ok) return { key: first, created: true };
    const held = made.item ?? {};
    if (held[A.level] === level) return { key: first, created: false, item: held };
    const highest = held[A.highest];
    // Fired at a higher level (a lowered budget), or at this one by a later firing.
    if (typeof highest !== 'bigint' || highest >= level) return { key: later, created: false };
    const raised = await store.transact([
      {
        key: first,
        set: [{ attr: A.highest, value: level }],
        condition: { attr: A.highest, op: '<', value: level },
      },
      { key: later, set: fields, condition: { absent: TABLE_SCHEMA.partitionKey } },
    ]);
    if (raised.ok) return { key: later, created: true };
    const [higher, exists] = raised.failures;
    if (exists?.reason === 'condition') return { key: later, created: false, item: exists.item };
    if (higher?.reason === 'condition') return { key: later, created: false };
    // A conflict with another writer of either item: look again.
  }
  throw new StoreUnavailableError('budget alerts kept conflicting; retry');
}

/**
 * Claims an existing alert that is not sent and whose claim has lapsed, was released, or is this
 * sender's own (made by a write whose answer was lost); `none` when there is no such alert (its
 * threshold never fired at that level).
 */
async function takeOver(
  store: AdminStore,
  key: ItemKey,
  item: ItemState | undefined,
  nowMs: number,
  claimer: string,
): Promise<'taken' | 'claimed' | 'sent' | 'none'> {
  if (item?.[A.sent] !== undefined) return 'sent';
  const result = await store.update({
    key,
    set: [
      { attr: A.claimed, value: BigInt(nowMs) },
      { attr: A.claimedBy, value: claimer },
    ],
    condition: {
      and: [
        { exists: TABLE_SCHEMA.partitionKey },
        { absent: A.sent },
        {
          or: [
            { absent: A.claimed },
            { attr: A.claimed, op: '<', value: BigInt(nowMs - CLAIM_MS) },
            { attr: A.claimedBy, op: '=', value: claimer },
          ],
        },
      ],
    },
  });
  if (result.ok) return 'taken';
  if (result.item === undefined) return 'none';
  return result.item[A.sent] !== undefined ? 'sent' : 'claimed';
}
