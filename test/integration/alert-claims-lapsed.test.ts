/**
 * A budget alert created by one local server whose answer was lost (its batch fails), and which
 * that server never comes back to (it stopped, or its reader is still backing off), while another
 * server reads the same batch and finds the alert claimed by the first: the other server must
 * send it once the claim lapses, though its stream has moved on. Seen in the soak: listed as
 * undelivered, never received by the webhook. On DynamoDB Local's real stream; the lost answer
 * is injected after the write was applied.
 */
import {
  type AdminStore,
  itemKeys,
  listAlerts,
  parseLimits,
  StoreUnavailableError,
  UsageAggregator,
} from '@sluice/core';
import { type BudgetAlert, CLAIM_MS, type ItemChange } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { streamed } from '../support/streams.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('alert-claims');

async function changesOf(entity: string): Promise<ItemChange[]> {
  return (await streamed(table)).filter((c) => c.key.pk === itemKeys.entityWide(entity).pk);
}

/** A local server's aggregator (`keep`), on `store`, sending to `sent`. */
const server = (claimer: string, sent: BudgetAlert[], clock: () => number, store: AdminStore) =>
  new UsageAggregator({
    alertSettleMs: 0,
    store,
    clock,
    claimer,
    sendAlert: async (alert) => {
      sent.push(alert);
    },
    onSendFailure: 'keep',
  });

describe('a budget alert claimed by a server whose claim write lost its answer', () => {
  it('is sent by another server once the claim lapses, though that server never reads the batch again', async () => {
    const clock = manualClock(Date.now());
    const limiter = table.limiter({ clock: clock.now });
    const name = 'lost-claim';
    const limits = parseLimits([
      { name: 'daily', metric: 'tokens', window: 'day', limit: 1_000, alerts: [0.5] },
    ]);
    const take = async (entity: string, tokens: number) =>
      expect(
        (
          await limiter.acquire({
            checks: [{ scope: 'entity', key: itemKeys.entityWide(entity), limits }],
            usage: { tokens },
          })
        ).allowed,
      ).toBe(true);
    await take(name, 600);
    const changes = await changesOf(name);

    // Server A creates the alert, claimed by it; the answer is lost, so its batch fails.
    let dropped = false;
    const hooked = new HookedStore(table.store, undefined, async (update) => {
      if (!dropped && update.key.pk === 'alert' && update.key.sk.includes(name)) {
        dropped = true;
        throw new StoreUnavailableError('DynamoDB unavailable: socket hang up');
      }
    });
    const lossy = Object.assign(Object.create(table.store) as AdminStore, {
      update: hooked.update.bind(hooked),
    });
    const fromA: BudgetAlert[] = [];
    await expect(server('local:host:3000', fromA, clock.now, lossy).apply(changes)).rejects.toThrow(
      StoreUnavailableError,
    );
    expect(dropped).toBe(true);

    // Server B reads the same batch: claimed by A, left to it. A never reads it again.
    const fromB: BudgetAlert[] = [];
    const b = server('local:host:3001', fromB, clock.now, table.store);
    await b.apply(changes);
    expect(fromB).toEqual([]);

    // Past the claim, B's stream has moved on: it reads a later batch (another entity's).
    clock.advance(CLAIM_MS + 1_000);
    await take('lost-claim-other', 10);
    await b.apply(await changesOf('lost-claim-other'));

    expect(fromA).toEqual([]);
    expect(fromB.map((a) => a.entity)).toEqual([name]);
    const listed = (await listAlerts(table.store, { limit: 1_000 })).items.filter(
      (a) => a.entity === name,
    );
    expect(listed).toEqual([expect.objectContaining({ threshold: 0.5, delivered: true })]);
  });
});
