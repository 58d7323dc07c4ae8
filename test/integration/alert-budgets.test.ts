/**
 * Budget alerts when the budget changes mid-window, on DynamoDB Local's real stream: alerts
 * follow the budget in force when the usage is counted. A threshold that never fired fires on
 * the next counted change at or past its level; one that fired does not fire again when the
 * budget is lowered, and fires once more when a raised budget's level is reached. Each firing is
 * created and sent once however the stream is read, and an item already past its thresholds
 * costs the aggregator no write. Crossings are judged at once (`alertSettleMs: 0`): no charge
 * here is given back (test/e2e/budget-alerts.test.ts has one that is).
 */
import {
  type AdminStore,
  itemKeys,
  type Limit,
  type Limiter,
  listAlerts,
  parseLimits,
  StoreUnavailableError,
  UsageAggregator,
} from '@sluice/core';
import {
  type BudgetAlert,
  grow,
  type ItemChange,
  normalizeLimit,
  shardKey,
} from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { HookedStore } from '../support/hooked-store.js';
import { streamed } from '../support/streams.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('alert-budgets');

/** The changes of `entity`'s items the table's stream holds so far, in stream order. */
async function changesOf(entity: string): Promise<ItemChange[]> {
  const all = await streamed(table);
  return all.filter((c) => c.key.pk === itemKeys.entityWide(entity).pk);
}

interface Quota {
  readonly limit: number;
  readonly alerts?: readonly number[];
  readonly window?: 'day' | 'month';
  readonly timezone?: string;
}

/** One process taking `tokens` from `entity`'s quota, as the budget stands for this call. */
async function take(limiter: Limiter, entity: string, quota: Quota, tokens: number) {
  const { window = 'month', ...rest } = quota;
  const result = await limiter.acquire({
    checks: [
      {
        scope: 'entity',
        key: itemKeys.entityWide(entity),
        limits: parseLimits([{ name: 'budget', metric: 'tokens', window, ...rest }]),
      },
    ],
    usage: { tokens },
  });
  expect(result.allowed).toBe(true);
}

/** An aggregator that sends to `sent`. */
const aggregator = (sent: BudgetAlert[], store: AdminStore = table.store) =>
  new UsageAggregator({
    alertSettleMs: 0,
    store,
    sendAlert: async (alert) => {
      sent.push(alert);
    },
  });

/** Applies a batch as the event source mapping does: a batch that fails comes back until it is counted. */
async function delivered(reader: UsageAggregator, changes: readonly ItemChange[]) {
  await expect
    .poll(
      () =>
        reader.apply(changes).then(
          () => true,
          () => false,
        ),
      { timeout: 30_000, interval: 20 },
    )
    .toBe(true);
}

async function alertsOf(entity: string) {
  const items = (await listAlerts(table.store, { limit: 1_000 })).items.filter(
    (a) => a.entity === entity,
  );
  return items
    .map((a) => ({
      window: a.window,
      threshold: a.threshold,
      limit_value: a.limit_value,
      used: a.used,
      delivered: a.delivered,
    }))
    .sort(
      (a, b) =>
        a.window.localeCompare(b.window) ||
        a.limit_value - b.limit_value ||
        a.threshold - b.threshold,
    );
}

const summary = (sent: readonly BudgetAlert[]) =>
  sent
    .map((a) => [a.threshold, a.limit_value])
    .sort((a, b) => (a[1] ?? 0) - (b[1] ?? 0) || (a[0] ?? 0) - (b[0] ?? 0));

describe('budget alerts when the budget changes mid-window', () => {
  it('fire at a lowered budget’s level on the next counted change, though usage was already past it', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'lowered';
    await take(limiter, entity, { limit: 10_000, alerts: [0.8] }, 6_000); // 60%: nothing yet
    await take(limiter, entity, { limit: 7_000, alerts: [0.8] }, 500); // 6,500 of 7,000

    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({ threshold: 0.8, limit_value: 7_000, used: 6_500, delivered: true }),
    ]);
    expect(sent).toHaveLength(1);
  });

  it('fire again at a raised budget’s level after the old budget was spent', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'raised';
    await take(limiter, entity, { limit: 10_000, alerts: [1] }, 10_000);
    await take(limiter, entity, { limit: 20_000, alerts: [1] }, 9_000);
    await take(limiter, entity, { limit: 20_000, alerts: [1] }, 1_000);

    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({ threshold: 1, limit_value: 10_000, used: 10_000 }),
      expect.objectContaining({ threshold: 1, limit_value: 20_000, used: 20_000 }),
    ]);
    expect(summary(sent)).toEqual([
      [1, 10_000],
      [1, 20_000],
    ]);
  });

  it('do not fire again when the budget is lowered after they fired, and re-arm only above the level they fired at', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'twice';
    await take(limiter, entity, { limit: 10_000, alerts: [0.8] }, 8_100); // fires at 8,000
    await take(limiter, entity, { limit: 9_000, alerts: [0.8] }, 100); // level 7,200: fired above it
    await take(limiter, entity, { limit: 9_500, alerts: [0.8] }, 100); // level 7,600: still below 8,000
    await take(limiter, entity, { limit: 12_000, alerts: [0.8] }, 1_000); // level 9,600: 9,300
    await take(limiter, entity, { limit: 12_000, alerts: [0.8] }, 400); // 9,700: fires

    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({ threshold: 0.8, limit_value: 10_000, used: 8_100 }),
      expect.objectContaining({ threshold: 0.8, limit_value: 12_000, used: 9_700 }),
    ]);
    expect(sent).toHaveLength(2);
  });

  it('fire at the exact decimal level of a threshold (7 of 100 for 0.07, 29 for 0.29)', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'exact';
    const quota = { limit: 100, alerts: [0.07, 0.29] };
    await take(limiter, entity, quota, 6);
    await take(limiter, entity, quota, 1); // 7
    await take(limiter, entity, quota, 21);
    await take(limiter, entity, quota, 1); // 29

    await aggregator([]).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({ threshold: 0.07, used: 7 }),
      expect.objectContaining({ threshold: 0.29, used: 29 }),
    ]);
  });

  it('stop when the quota no longer names thresholds', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'unalerted';
    await take(limiter, entity, { limit: 1_000, alerts: [0.5] }, 400);
    await take(limiter, entity, { limit: 1_000 }, 100);
    await take(limiter, entity, { limit: 1_000 }, 100); // 600: past 50%, with no thresholds

    await aggregator([]).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([]);
  });

  it('follow the budget of each window as the windows turn in the quota’s time zone', async () => {
    // 2026-03-08 is 23 hours long in New York (clocks go forward at 02:00).
    const clock = manualClock(Date.parse('2026-03-08T04:50:00Z')); // 23:50 on March 7 there
    const limiter = table.limiter({ clock: clock.now });
    const entity = 'rollover';
    const day = { window: 'day', timezone: 'America/New_York', alerts: [0.8] } as const;
    await take(limiter, entity, { ...day, limit: 10_000 }, 9_000);
    clock.set(Date.parse('2026-03-08T05:10:00Z')); // 00:10 on March 8
    await take(limiter, entity, { ...day, limit: 5_000 }, 3_999); // a new window: below 4,000
    await take(limiter, entity, { ...day, limit: 5_000 }, 1); // 4,000: fires
    clock.set(Date.parse('2026-03-09T03:50:00Z')); // 23:50 EDT, still March 8
    await take(limiter, entity, { ...day, limit: 6_000 }, 900); // 4,900: level 4,800, raised

    await aggregator([]).apply(await changesOf(entity));

    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({
        window: '2026-03-07T05:00:00.000Z',
        limit_value: 10_000,
        used: 9_000,
      }),
      expect.objectContaining({
        window: '2026-03-08T05:00:00.000Z',
        limit_value: 5_000,
        used: 4_000,
      }),
      expect.objectContaining({
        window: '2026-03-08T05:00:00.000Z',
        limit_value: 6_000,
        used: 4_900,
      }),
    ]);
  });
});

describe('budget alerts at a changed budget', () => {
  it('are created and sent once per level, whatever crossed it and however often the stream is read', async () => {
    const limiters = [
      table.limiter({ clock: manualClock().now }),
      table.limiter({ clock: manualClock().now }),
    ];
    const entity = 'races';
    const before = { limit: 10_000, alerts: [0.5, 1] };
    const after = { limit: 20_000, alerts: [0.5, 1] };
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => take(limiters[i % 2] as Limiter, entity, before, 1_000)),
    );
    // The budget doubles (50% of it is what was used): 10 concurrent callers spend it.
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => take(limiters[i % 2] as Limiter, entity, after, 1_000)),
    );
    const changes = await changesOf(entity);

    // Two readers at once, each in stream order; then a replay, and a reordered replay.
    const sent: BudgetAlert[] = [];
    const readers = [aggregator(sent), aggregator(sent)];
    await Promise.all(readers.map((reader) => delivered(reader, changes)));
    await delivered(readers[0] as UsageAggregator, changes);
    await delivered(readers[1] as UsageAggregator, [...changes].reverse());

    expect(summary(sent)).toEqual([
      [0.5, 10_000],
      [1, 10_000],
      [0.5, 20_000],
      [1, 20_000],
    ]);
    expect(await alertsOf(entity)).toEqual([
      expect.objectContaining({ threshold: 0.5, limit_value: 10_000 }),
      expect.objectContaining({ threshold: 1, limit_value: 10_000, used: 10_000 }),
      expect.objectContaining({ threshold: 0.5, limit_value: 20_000 }),
      expect.objectContaining({ threshold: 1, limit_value: 20_000, used: 20_000 }),
    ]);
    expect((await alertsOf(entity)).every((a) => a.delivered)).toBe(true);
  });

  it('are created and sent once by eight readers of one stream at once, for a limit named constructor', async () => {
    const key = itemKeys.entityWide('eight');
    const image = (definition: string, used: bigint) => ({
      a_constructor: definition,
      w_constructor: 1_000n,
      u_constructor: used,
    });
    const changes: ItemChange[] = [
      { key, oldImage: image('10000|0.8', 7_900n), newImage: image('10000|0.8', 8_100n) },
      { key, oldImage: image('10000|0.8', 8_100n), newImage: image('20000|0.8', 8_200n) },
      { key, oldImage: image('20000|0.8', 15_900n), newImage: image('20000|0.8', 16_100n) },
    ];

    const sent: BudgetAlert[] = [];
    await Promise.all(Array.from({ length: 8 }, () => delivered(aggregator(sent), changes)));

    expect(summary(sent)).toEqual([
      [0.8, 10_000],
      [0.8, 20_000],
    ]);
    expect(await alertsOf('eight')).toEqual([
      expect.objectContaining({ limit_value: 10_000, used: 8_100, delivered: true }),
      expect.objectContaining({ limit_value: 20_000, used: 16_100, delivered: true }),
    ]);
  });

  it('cost no write for changes of an item already past its thresholds under the same budget', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'past';
    const quota = { limit: 10_000, alerts: [0.5, 0.8] };
    await take(limiter, entity, quota, 9_000);
    await aggregator([]).apply(await changesOf(entity));
    const seen = (await changesOf(entity)).length;
    for (let i = 0; i < 5; i++) await take(limiter, entity, quota, 100);
    const later = (await changesOf(entity)).slice(seen);

    const writes = { update: 0, transact: 0 };
    const counting: AdminStore = {
      update: (update) => {
        writes.update++;
        return table.store.update(update);
      },
      transact: (items, options) => {
        writes.transact++;
        return table.store.transact(items, options);
      },
      get: (key) => table.store.get(key),
      query: (pk, options) => table.store.query(pk, options),
    };
    const report = await aggregator([], counting).apply(later);

    expect(later).toHaveLength(5);
    expect(report.alerts).toBe(0);
    expect(writes).toEqual({ update: 0, transact: 0 });
  });
});

describe('a budget alert whose creation answer was lost', () => {
  it('is sent by the same aggregator when its batch comes back, and locally too', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    for (const onSendFailure of ['retry', 'keep'] as const) {
      const name = `lost-answer-${onSendFailure}`;
      await take(limiter, name, { limit: 1_000, alerts: [0.5] }, 600);
      let dropped = false;
      // The alert is created, then its answer is lost (a dropped connection).
      const store = new HookedStore(table.store, undefined, async (update) => {
        if (!dropped && update.key.pk === 'alert' && update.key.sk.includes(name)) {
          dropped = true;
          throw new StoreUnavailableError('DynamoDB unavailable: socket hang up');
        }
      });
      const sent: BudgetAlert[] = [];
      const reader = new UsageAggregator({
        alertSettleMs: 0,
        store: Object.assign(Object.create(table.store) as AdminStore, {
          update: store.update.bind(store),
        }),
        sendAlert: async (alert) => {
          sent.push(alert);
        },
        onSendFailure,
      });

      await delivered(reader, await changesOf(name));

      expect(dropped).toBe(true);
      expect(sent.map((a) => a.entity)).toEqual([name]);
      expect(await alertsOf(name)).toEqual([expect.objectContaining({ delivered: true })]);
    }
  });
});

describe('a budget cut below what is already used', () => {
  it('fires its alerts at the next call, which it refuses', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'cut-below';
    await take(limiter, entity, { limit: 1_000, alerts: [0.5, 1] }, 600); // 0.5 fires
    const cut = parseLimits([
      { name: 'budget', metric: 'tokens', window: 'month', limit: 550, alerts: [0.5, 1] },
    ]);

    const refused = await limiter.acquire({
      checks: [{ scope: 'entity', key: itemKeys.entityWide(entity), limits: cut }],
      usage: { tokens: 10 },
    });
    await limiter.engine.idle();
    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(refused.allowed).toBe(false);
    expect(summary(sent)).toEqual([
      [1, 550],
      [0.5, 1_000],
    ]);
  });
});

describe('budget alerts on a scope that is or may be sharded', () => {
  // 80 calls of 10 tokens pass a 25% alert of the whole quota (500) and of each shard's share
  // (125 of 500), while no shard comes near refusing: shards are picked at random, and a quota
  // of 1,000 split four ways refused a call now and then.
  const daily = { name: 'budget', metric: 'tokens', limit: 2_000, window: 'day' } as const;

  /** 80 calls of 10 tokens on `entity`'s entity-wide item, under `limits` as the engine gets them. */
  async function spend(limiter: Limiter, entity: string, limits: Limit[]) {
    const check = { scope: 'entity', key: itemKeys.entityWide(entity), limits };
    for (let i = 0; i < 80; i++) {
      const result = await limiter.acquire({ checks: [check], usage: { tokens: 10 } });
      expect(result.allowed).toBe(true);
    }
    await limiter.engine.growth();
    await limiter.engine.idle();
  }

  /** What each of the scope's 4 shards records: its share count, its quota's alert definition. */
  const shardsOf = (entity: string) =>
    Promise.all(
      [0, 1, 2, 3].map(async (s) => {
        const item = await table.store.get(shardKey(itemKeys.entityWide(entity), s));
        return { n: item?.n, definition: item?.a_budget ?? '' };
      }),
    );

  it('record and fire nothing for a quota beside a limit that shards its scope, stored before that was refused', async () => {
    // A plan's daily quota with alerts beside a tpm with shards: 4 (a 400 now). Each shard judged
    // the alert on its share: four alerts fired, three naming `*#1`… as their resource.
    const limiter = table.limiter({ clock: manualClock().now });
    const entity = 'beside-shards';
    const limits = [
      ...parseLimits([
        { name: 'tpm', metric: 'tokens', limit: 1_000_000, per: 'minute', shards: 4 },
      ]),
      normalizeLimit({ ...daily, alerts: [0.25] }),
    ];
    await spend(limiter, entity, limits);

    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(sent).toEqual([]);
    expect(await alertsOf(entity)).toEqual([]);
    expect(await shardsOf(entity)).toEqual(Array(4).fill({ n: 4n, definition: '' }));
  });

  it('record and fire nothing on a scope split before, though its limits ask for no shards now', async () => {
    // The process that acquires has never seen the scope: its first write learns the shards.
    const entity = 'split-before';
    await grow(table.limiter().engine, itemKeys.entityWide(entity), 4);
    await spend(
      table.limiter({ clock: manualClock().now }),
      entity,
      parseLimits([{ ...daily, alerts: [0.25] }]),
    );

    const sent: BudgetAlert[] = [];
    await aggregator(sent).apply(await changesOf(entity));

    expect(sent).toEqual([]);
    expect(await shardsOf(entity)).toEqual(Array(4).fill({ n: 4n, definition: '' }));
  });

  it('record nothing on a shard when a process that has not seen the split refuses a call', async () => {
    // Its decision's checks were made with alerts on (it knew of no shards): the refusal must not
    // write the whole budget's definition onto the scope's first shard.
    const entity = 'refused-on-split';
    const limits = parseLimits([{ ...daily, alerts: [0.25] }]);
    await grow(table.limiter().engine, itemKeys.entityWide(entity), 4);
    const clock = manualClock();
    await spend(table.limiter({ clock: clock.now }), entity, limits);
    const full = table.limiter({ clock: clock.now });
    const check = { scope: 'entity', key: itemKeys.entityWide(entity), limits };
    for (let i = 0; i < 120; i++) await full.acquire({ checks: [check], usage: { tokens: 10 } });

    const fresh = table.limiter({ clock: clock.now });
    const refused = await fresh.acquire({ checks: [check], usage: { tokens: 10 } });
    expect(refused.allowed).toBe(false);
    await fresh.engine.idle();

    expect(await shardsOf(entity)).toEqual(Array(4).fill({ n: 4n, definition: '' }));
  });
});

describe('a budget alert claimed by a process stopped before it sent it', () => {
  it('is sent by its successor of the same name at once, and left to it by another', async () => {
    const limiter = table.limiter({ clock: manualClock().now });
    const name = 'claimed-then-stopped';
    await take(limiter, name, { limit: 1_000, alerts: [0.5] }, 600);
    const changes = await changesOf(name);
    // The first process claims the alert, then stops while sending it (its send never returns).
    const stopped = new UsageAggregator({
      alertSettleMs: 0,
      store: table.store,
      claimer: 'local:host:3000',
      sendAlert: () => new Promise(() => {}),
      onSendFailure: 'keep',
    });
    void stopped.apply(changes);
    await expect.poll(async () => (await alertsOf(name)).length).toBe(1);
    const reader = (claimer: string, sent: BudgetAlert[]) =>
      new UsageAggregator({
        alertSettleMs: 0,
        store: table.store,
        claimer,
        sendAlert: async (alert) => {
          sent.push(alert);
        },
        onSendFailure: 'keep',
      });

    const elsewhere: BudgetAlert[] = [];
    await reader('local:host:3001', elsewhere).apply(changes);
    const successor: BudgetAlert[] = [];
    await reader('local:host:3000', successor).apply(changes);

    expect(elsewhere).toEqual([]);
    expect(successor.map((a) => a.entity)).toEqual([name]);
    expect(await alertsOf(name)).toEqual([expect.objectContaining({ delivered: true })]);
  });
});
