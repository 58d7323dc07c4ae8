/**
 * Budget alerts: a calendar quota may name thresholds (shares of its limit). The acquire that
 * writes such a quota records its limit and thresholds beside its window; the aggregator sees
 * each change of the item with its old and new `used`, and a change that takes `used` from
 * below a threshold to at or above it is a crossing.
 *
 * Exactly one alert per (item, limit, window, threshold): the alert item is created with a
 * condition that it does not exist, so concurrent crossings, a crossing after a refund, a
 * replayed batch and two readers of one stream all find it there. Whoever created it sends it;
 * a send that failed leaves it unclaimed, so the record's next delivery sends it. A record that
 * finds the alert claimed and not yet sent fails its batch (in AWS), which comes back until the
 * alert is sent or the claim lapses after {@link CLAIM_MS} (its sender died mid-send). Only a
 * sender that dies after the event bus took the alert and before marking it sent can cause a
 * second event, a minute later.
 */

import { StoreUnavailableError } from '../errors.js';
import {
  alertAttributes as A,
  bucketAttributes,
  itemKeys,
  TABLE_SCHEMA,
  usageKeys,
} from '../store/schema.js';
import type { AdminStore, ItemKey, ItemState } from '../store/types.js';
import type { ItemChange } from './aggregator.js';

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
  /** The quota's limit. */
  readonly limit_value: number;
}

/** Sends one alert; throws if it could not. */
export type AlertSender = (alert: BudgetAlert) => Promise<void>;

interface Crossing {
  readonly key: ItemKey;
  readonly alert: BudgetAlert;
}

const ALERTS_PREFIX = bucketAttributes.alerts('');
const ENTITY_PREFIX = itemKeys.entityWide('').pk;
const RESOURCE_PREFIX = itemKeys.resourceBucket('').pk;

/** The thresholds one change crosses upwards. */
export function crossingsOf(change: ItemChange): Crossing[] {
  const next = change.newImage;
  if (!next) return [];
  const out: Crossing[] = [];
  for (const [attr, definition] of Object.entries(next)) {
    if (!attr.startsWith(ALERTS_PREFIX) || typeof definition !== 'string') continue;
    const name = attr.slice(ALERTS_PREFIX.length);
    const [limitText, thresholds] = definition.split('|');
    const limit = Number(limitText);
    const window = next[bucketAttributes.window(name)];
    const used = next[bucketAttributes.used(name)];
    if (typeof window !== 'bigint' || typeof used !== 'bigint' || !thresholds) continue;
    const old = change.oldImage;
    const before =
      old?.[bucketAttributes.window(name)] === window ? old[bucketAttributes.used(name)] : 0n;
    const was = typeof before === 'bigint' ? before : 0n;
    for (const threshold of thresholds.split(',').map(Number)) {
      const level = BigInt(Math.ceil(threshold * limit));
      if (was >= level || used < level) continue;
      out.push({
        key: change.key,
        alert: alertOf(change.key, name, window, threshold, used, limit),
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
  limitValue: number,
): BudgetAlert {
  const resourceWide = key.pk.startsWith(RESOURCE_PREFIX);
  return {
    entity: resourceWide ? null : key.pk.slice(ENTITY_PREFIX.length),
    resource: resourceWide ? key.pk.slice(RESOURCE_PREFIX.length) : key.sk === '*' ? null : key.sk,
    limit,
    window: new Date(Number(window)).toISOString(),
    threshold,
    used: Number(used),
    limit_value: limitValue,
  };
}

/** How {@link recordAlerts} sends. */
export interface SendOptions {
  readonly clock: () => number;
  readonly send?: AlertSender;
  readonly onSendFailure: 'retry' | 'keep';
  readonly onError: (error: unknown) => void;
}

/** Records each crossing once and sends the alerts this call created or took over. */
export async function recordAlerts(
  store: AdminStore,
  crossings: readonly Crossing[],
  options: SendOptions,
): Promise<number> {
  let created = 0;
  for (const { key, alert } of crossings) {
    const alertKey = usageKeys.alert(alert.window, key, alert.limit, alert.threshold);
    const nowMs = options.clock();
    const claim = options.send ? [{ attr: A.claimed, value: BigInt(nowMs) }] : [];
    const fresh = await store.update({
      key: alertKey,
      set: [
        { attr: A.detail, value: JSON.stringify(alert) },
        { attr: A.at, value: new Date(nowMs).toISOString() },
        ...claim,
      ],
      condition: { absent: TABLE_SCHEMA.partitionKey },
    });
    if (fresh.ok) created++;
    if (!options.send) continue;
    if (!fresh.ok) {
      const taken = await takeOver(store, alertKey, fresh.item, nowMs);
      if (taken === 'sent') continue;
      if (taken === 'claimed') {
        // Another sender holds it, or died holding it: in AWS the batch comes back until the
        // alert is sent or the claim lapses; locally the other process is left to it.
        if (options.onSendFailure === 'retry')
          throw new StoreUnavailableError('a budget alert is being sent by another reader');
        continue;
      }
    }
    try {
      await options.send(alert);
    } catch (error) {
      await store.update({ key: alertKey, set: [{ attr: A.claimed, value: 0n }] });
      if (options.onSendFailure === 'retry') throw error;
      options.onError(error);
      continue;
    }
    await store.update({
      key: alertKey,
      set: [{ attr: A.sent, value: new Date(options.clock()).toISOString() }],
    });
  }
  return created;
}

/** Claims an existing alert that is not sent and whose claim has lapsed (or was released). */
async function takeOver(
  store: AdminStore,
  key: ItemKey,
  item: ItemState | undefined,
  nowMs: number,
): Promise<'taken' | 'claimed' | 'sent'> {
  if (item?.[A.sent] !== undefined) return 'sent';
  const result = await store.update({
    key,
    set: [{ attr: A.claimed, value: BigInt(nowMs) }],
    condition: {
      and: [
        { absent: A.sent },
        {
          or: [
            { absent: A.claimed },
            { attr: A.claimed, op: '<', value: BigInt(nowMs - CLAIM_MS) },
          ],
        },
      ],
    },
  });
  if (result.ok) return 'taken';
  return result.item?.[A.sent] !== undefined ? 'sent' : 'claimed';
}
