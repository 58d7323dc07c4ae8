/**
 * The usage aggregator on DynamoDB Local's real stream: leases admitted, adjusted, released,
 * cancelled and refused by two "processes", read back from the stream, and counted — then the
 * same records replayed, reordered and counted by two aggregators at once, which must change
 * nothing. Budget alerts from the same records are created once (judged at once,
 * `alertSettleMs: 0`: test/e2e/budget-alerts.test.ts has a charge given back).
 */
import { randomInt } from 'node:crypto';
import {
  type AdminStore,
  itemKeys,
  type Limiter,
  listAlerts,
  parseLimits,
  type ScopeCheck,
  SluiceError,
  topEntities,
  UsageAggregator,
  type UsageContext,
  usageHistory,
} from '@sluice/core';
import { CLAIM_MS, DenialBuffer, type ItemChange, type ItemUpdate } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { streamed } from '../support/streams.js';
import { fileTable } from '../support/table.js';

const table = fileTable('usage');

const tokens = (n: number) => ({ name: 'tpm', metric: 'tokens', limit: n, per: 'minute' });

function scope(entity: string, resource: string, limits: unknown[]): ScopeCheck {
  return {
    scope: 'entity',
    key: itemKeys.entityBucket(entity, resource),
    limits: parseLimits(limits),
  };
}

const context = (entity: string, resource: string): UsageContext => ({
  resource,
  scopes: [
    { entity, timezone: 'UTC' },
    { entity: 'org-u', timezone: 'Europe/Berlin' },
  ],
});

type Totals = Record<string, number>;
const add = (into: Totals, usage: Totals) => {
  for (const [k, v] of Object.entries(usage)) into[k] = (into[k] ?? 0) + v;
};

describe('usage history from the stream', () => {
  const expected = new Map<string, Totals>(); // entity → final totals of its leases
  const leases = new Map<string, number>();
  let changes: ItemChange[] = [];

  it('counts what was finally settled, per entity and ancestor, exactly once', async () => {
    const processes: Limiter[] = [table.limiter(), table.limiter()];
    const pick = () => processes[randomInt(2)] as Limiter;
    const keys = ['key-a', 'key-b', 'key-c'];
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const entity = keys[i % keys.length] as string;
        const usage = { input_tokens: 100 + randomInt(400), output_tokens: 50 + randomInt(100) };
        // key-c's limit refuses most of its calls: refusals count nothing.
        const limit = entity === 'key-c' ? 1_500 : 1_000_000;
        const result = await pick().acquire({
          checks: [scope(entity, 'gpt-4o', [tokens(limit)])],
          usage,
          context: context(entity, 'gpt-4o'),
        });
        if (!result.allowed) return;
        const fate = i % 5;
        let final: Totals = {
          ...usage,
          tokens: usage.input_tokens + usage.output_tokens,
          requests: 1,
        };
        if (fate === 1) {
          final = { ...final, output_tokens: usage.output_tokens + 7 };
          final.tokens = usage.input_tokens + usage.output_tokens + 7;
          await pick().adjust(result.leaseId, { output_tokens: usage.output_tokens + 3 });
          await pick().adjust(result.leaseId, { output_tokens: usage.output_tokens + 7 });
        } else if (fate === 2) {
          final = { input_tokens: 10, output_tokens: 5, tokens: 15, requests: 1 };
          await pick().release(result.leaseId, { input_tokens: 10, output_tokens: 5 });
          await pick().release(result.leaseId, { input_tokens: 10, output_tokens: 5 }); // retried
        } else if (fate === 3) {
          await pick().release(result.leaseId); // the call failed: counts nothing
          return;
        }
        // fate 0 and 4: never settled, the estimate stands.
        add(expected.get(entity) ?? (expected.set(entity, {}).get(entity) as Totals), final);
        leases.set(entity, (leases.get(entity) ?? 0) + 1);
      }),
    );
    changes = await streamed(table);
    const aggregator = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await aggregator.apply(changes);

    for (const entity of keys) {
      const rows = await usageHistory(table.store, {
        entity,
        granularity: 'month',
        fromMs: Date.now() - 40 * 86_400_000,
        toMs: Date.now() + 86_400_000,
      });
      const got: Totals = {};
      let counted = 0;
      for (const row of rows) {
        add(got, row.usage);
        counted += row.leases;
      }
      expect({ entity, got, counted }).toEqual({
        entity,
        got: expected.get(entity) ?? {},
        counted: leases.get(entity) ?? 0,
      });
    }
    const org: Totals = {};
    for (const totals of expected.values()) add(org, totals);
    const orgRows = await usageHistory(table.store, {
      entity: 'org-u',
      granularity: 'day',
      fromMs: Date.now() - 2 * 86_400_000,
      toMs: Date.now() + 86_400_000,
      resource: 'gpt-4o',
    });
    const orgGot: Totals = {};
    for (const row of orgRows) add(orgGot, row.usage);
    expect(orgGot).toEqual(org);
  });

  it('changes nothing when the batch is replayed, reordered, or counted by two readers at once', async () => {
    const snapshot = async () =>
      Promise.all(
        ['key-a', 'key-b', 'key-c', 'org-u'].map((entity) =>
          usageHistory(table.store, {
            entity,
            granularity: 'hour',
            fromMs: Date.now() - 2 * 86_400_000,
            toMs: Date.now() + 86_400_000,
          }),
        ),
      );
    const before = await snapshot();
    const top = await topEntities(table.store, {
      period: 'day',
      date: new Date().toISOString().slice(0, 10),
      metric: 'tokens',
      by: 'usage',
      limit: 10,
    });

    const again = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await again.apply(changes); // the same batch again
    await again.apply([...changes].reverse()); // reordered: settlements before acquires
    const halves = [changes.slice(0, changes.length / 2), changes.slice(changes.length / 2)];
    await Promise.all([
      new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(changes),
      new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply([
        ...(halves[1] ?? []),
        ...(halves[0] ?? []),
      ]),
    ]);

    expect(await snapshot()).toEqual(before);
    expect(
      await topEntities(table.store, {
        period: 'day',
        date: new Date().toISOString().slice(0, 10),
        metric: 'tokens',
        by: 'usage',
        limit: 10,
      }),
    ).toEqual(top);
  });

  it('counts a settlement seen before its acquire as the lease’s final totals', async () => {
    const limiter = table.limiter();
    const entity = 'key-late';
    const result = await limiter.acquire({
      checks: [scope(entity, 'm', [tokens(100_000)])],
      usage: { tokens: 1_000 },
      context: { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] },
    });
    if (!result.allowed) throw new Error('refused');
    await limiter.release(result.leaseId, { tokens: 400 });
    const mine = (await streamed(table)).filter(
      (c) => c.key.pk === `entity#${entity}` || c.key.pk.startsWith('lease#'),
    );
    // The lease item's record first, then the acquire's: the acquire's estimate is stale.
    const aggregator = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await aggregator.apply(mine.filter((c) => c.key.pk.startsWith('lease#')));
    await aggregator.apply(mine.filter((c) => !c.key.pk.startsWith('lease#')));
    const rows = await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: Date.now() - 86_400_000,
      toMs: Date.now() + 86_400_000,
    });
    expect(rows.map((r) => [r.usage, r.leases])).toEqual([[{ tokens: 400, requests: 1 }, 1]]);
  });
});

describe('budget alerts from the stream', () => {
  it('are created once per threshold, whatever crossed it and however often it is read', async () => {
    const limiter = table.limiter();
    const entity = 'key-alerts';
    const quota = {
      name: 'daily',
      metric: 'tokens',
      limit: 10_000,
      window: 'day',
      alerts: [0.5, 0.8],
    };
    const check = scope(entity, 'm', [quota]);
    const ctx = { resource: 'm', scopes: [{ entity, timezone: 'UTC' }] };
    const results = await Promise.all(
      Array.from({ length: 16 }, () =>
        limiter.acquire({ checks: [check], usage: { tokens: 1_000 }, context: ctx }),
      ),
    );
    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    // Refunds back below 80% and new crossings: still one alert per threshold.
    for (const r of results.filter((r) => r.allowed).slice(0, 3))
      if (r.allowed) await limiter.release(r.leaseId);
    for (let i = 0; i < 3; i++)
      await limiter.acquire({ checks: [check], usage: { tokens: 1_000 }, context: ctx });

    const sent: unknown[] = [];
    const changes = await streamed(table);
    const aggregators = [1, 2].map(
      () =>
        new UsageAggregator({
          alertSettleMs: 0,
          store: table.store,
          sendAlert: async (alert) => {
            sent.push(alert);
          },
        }),
    );
    // As the event source mapping does, a batch that fails comes back (here: at once).
    const delivered = async (aggregator: UsageAggregator) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await aggregator.apply(changes);
        } catch (error) {
          if (attempt >= 20) throw error;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    await Promise.all(aggregators.map(delivered));
    await aggregators[0]?.apply(changes);

    const listed = (await listAlerts(table.store, { limit: 100 })).items.filter(
      (a) => a.entity === entity,
    );
    expect(listed.map((a) => a.threshold).sort()).toEqual([0.5, 0.8]);
    expect(
      listed.every((a) => a.delivered && a.limit === 'daily' && a.limit_value === 10_000),
    ).toBe(true);
    expect(sent).toHaveLength(2);
  });
});

describe('a budget alert whose sender died mid-send', () => {
  it('holds its batch back while the claim is fresh, then is sent by the next reader', async () => {
    const key = itemKeys.entityWide('key-died');
    const image = (used: bigint) => ({ a_daily: '100|0.5', w_daily: 1_000n, u_daily: used });
    const crossing: ItemChange = { key, oldImage: image(10n), newImage: image(60n) };
    const nowMs = Date.now();
    const sent: unknown[] = [];
    const reader = (atMs: number) =>
      new UsageAggregator({
        alertSettleMs: 0,
        store: table.store,
        clock: () => atMs,
        sendAlert: async (alert) => {
          sent.push(alert);
        },
      });
    // The first reader created and claimed it, then died before sending.
    const dying = new UsageAggregator({
      alertSettleMs: 0,
      store: table.store,
      clock: () => nowMs,
      sendAlert: () => new Promise<void>(() => {}),
    });
    void dying.apply([crossing]);
    await new Promise((r) => setTimeout(r, 300));

    await expect(reader(nowMs + 1_000).apply([crossing])).rejects.toThrow(/being sent/);
    expect(sent).toHaveLength(0);
    await reader(nowMs + CLAIM_MS + 1_000).apply([crossing]);
    await reader(nowMs + CLAIM_MS + 2_000).apply([crossing]);
    expect(sent).toHaveLength(1);
    const listed = (await listAlerts(table.store, { limit: 100 })).items.filter(
      (a) => a.entity === 'key-died',
    );
    expect(listed).toEqual([expect.objectContaining({ threshold: 0.5, delivered: true })]);
  });
});

describe('refusal counts', () => {
  it('are written once a gathering is old enough, at most once per flush interval', async () => {
    let now = Date.parse('2026-11-20T10:00:00Z');
    const store = new CountingStore(table.store);
    const denials = new DenialBuffer({ store, clock: () => now, flushMs: 5_000 });
    const context = { resource: 'm', scopes: [{ entity: 'key-due', timezone: 'UTC' }] };

    denials.record(context, ['tpm']);
    now += 1_000;
    denials.record(context, ['tpm']);
    await denials.flushDue();
    const early = store.counts.update;
    now += 4_000;
    await denials.flushDue();
    await denials.flushDue();

    expect(early).toBe(0);
    expect(store.counts.update).toBe(1);
  });

  it('are all counted when one entity is refused by many limit names, also in one refusal, 32 names a gathering at most', async () => {
    const denials = new DenialBuffer({ store: table.store, flushMs: 0 });
    const context = { resource: 'm', scopes: [{ entity: 'key-names', timezone: 'UTC' }] };
    for (let call = 0; call < 10; call++)
      denials.record(
        context,
        Array.from({ length: 16 }, (_, i) => `limit_${call}_${i}`),
      );
    // One refusal naming 48 limits (16 a scope over three scopes), one of them twice.
    denials.record(context, [...Array.from({ length: 48 }, (_, i) => `wide_${i}`), 'wide_0']);
    await denials.flushDue(true);
    const report = await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );

    const [hour] = await usageHistory(table.store, {
      entity: 'key-names',
      granularity: 'hour',
      fromMs: Date.now() - 3_600_000,
      toMs: Date.now() + 3_600_000,
    });
    expect(report.setAside).toEqual([]);
    const denied = new Map(Object.entries(hour?.denied ?? {}));
    expect(denied.size).toBe(160 + 48);
    expect(denied.get('wide_0')).toBe(2);
    expect([...denied].filter(([name]) => name !== 'wide_0').every(([, n]) => n === 1)).toBe(true);
  });

  it('land in the local day they happened in, even in a half-hour time zone', async () => {
    // 18:20 UTC is 23:50 in Kolkata; 18:40 UTC is 00:10 the next day there.
    let now = Date.parse('2026-11-20T18:20:00Z');
    const denials = new DenialBuffer({ store: table.store, clock: () => now, flushMs: 0 });
    const context = { resource: 'm', scopes: [{ entity: 'key-ist', timezone: 'Asia/Kolkata' }] };
    denials.record(context, ['tpm', 'tpm']);
    await denials.flushDue();
    now = Date.parse('2026-11-20T18:40:00Z');
    denials.record(context, ['tpm']);
    await denials.flushDue();
    await denials.flushDue(); // nothing left: no second write
    await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );

    const days = await usageHistory(table.store, {
      entity: 'key-ist',
      granularity: 'day',
      fromMs: Date.parse('2026-11-19T00:00:00Z'),
      toMs: Date.parse('2026-11-23T00:00:00Z'),
    });
    expect(days.map((d) => [d.period_start, d.denied])).toEqual([
      ['2026-11-19T18:30:00.000Z', { tpm: 2 }],
      ['2026-11-20T18:30:00.000Z', { tpm: 1 }],
    ]);
    const hours = await usageHistory(table.store, {
      entity: 'key-ist',
      granularity: 'hour',
      fromMs: Date.parse('2026-11-20T18:00:00Z'),
      toMs: Date.parse('2026-11-20T19:00:00Z'),
    });
    // Hours of the local day: 23:00 to midnight there, then midnight to 01:00.
    expect(hours.map((h) => [h.period_start, h.denied])).toEqual([
      ['2026-11-20T17:30:00.000Z', { tpm: 2 }],
      ['2026-11-20T18:30:00.000Z', { tpm: 1 }],
    ]);
  });
});

describe('a lease DynamoDB refuses to count', () => {
  const own = (entity: string): UsageContext => ({
    resource: 'm',
    scopes: [{ entity, timezone: 'UTC' }],
  });
  const lease = (limiter: Limiter, entity: string, usage: Record<string, number>) =>
    limiter.acquire({
      checks: [scope(entity, 'm', [tokens(1_000_000)])],
      usage,
      context: own(entity),
    });
  const monthOf = async (entity: string) => {
    const rows = await usageHistory(table.store, {
      entity,
      granularity: 'month',
      fromMs: Date.now() - 40 * 86_400_000,
      toMs: Date.now() + 86_400_000,
    });
    return rows.map((row) => ({ usage: row.usage, leases: row.leases }));
  };
  /** The table, refusing (as DynamoDB refuses an item grown past 400 KB) what `refuse` names. */
  const refusing = (refuse: (update: ItemUpdate) => boolean): AdminStore => {
    const inner = table.store;
    return {
      get: (key) => inner.get(key),
      update: async (update) => {
        if (refuse(update))
          throw new SluiceError('internal', 'DynamoDB rejected a write: ValidationError');
        return inner.update(update);
      },
      query: (pk, options) => inner.query(pk, options),
      transact: (writes, options) => inner.transact(writes, options),
    };
  };
  const rowOf = (entity: string, update: ItemUpdate) =>
    update.key.pk.includes(entity) || update.key.sk === entity; // its history or top rows
  /** A row's figures: what it counts, without the marks it keeps. */
  const figures = (state: Record<string, unknown> | undefined) =>
    Object.fromEntries(Object.entries(state ?? {}).filter(([attr]) => !/^w[asd]_/.test(attr)));

  it('is counted without its custom metrics, and holds up no other lease of its batch', async () => {
    const limiter = table.limiter();
    const custom = Object.fromEntries(Array.from({ length: 31 }, (_, i) => [`m${i}`, 1]));
    expect((await lease(limiter, 'key-many', { ...custom, requests: 1 })).allowed).toBe(true);
    expect((await lease(limiter, 'key-fine', { tokens: 10, requests: 1 })).allowed).toBe(true);
    // Rows of key-many that add to a custom metric are refused.
    const store = refusing(
      (u) => rowOf('key-many', u) && u.set.some((a) => a.attr.startsWith('m_m')),
    );

    const report = await new UsageAggregator({ store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );
    const again = await new UsageAggregator({ store, alertSettleMs: 0 }).apply(
      await streamed(table),
    ); // redelivered

    // Its hour row, without the custom metrics.
    expect(report.setAside.map((s) => s.left)).toEqual(['custom']);
    expect(report.setAside.every((s) => s.row.includes('key-many'))).toBe(true);
    expect(again.setAside).toEqual([]); // its rows' marks say counted: nothing more is added
    expect(await monthOf('key-many')).toEqual([{ usage: { requests: 1 }, leases: 1 }]);
    expect(await monthOf('key-fine')).toEqual([{ usage: { tokens: 10, requests: 1 }, leases: 1 }]);
  });

  it('is left out where even its marks are refused, and counted once a delivery is accepted', async () => {
    const limiter = table.limiter();
    expect((await lease(limiter, 'key-cursed', { tokens: 5, requests: 1 })).allowed).toBe(true);
    expect((await lease(limiter, 'key-blessed', { tokens: 7, requests: 1 })).allowed).toBe(true);
    const store = refusing((u) => rowOf('key-cursed', u));

    const report = await new UsageAggregator({ store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );

    expect(report.setAside.map((s) => s.left)).toEqual(['all']);
    expect(await monthOf('key-cursed')).toEqual([]); // nothing written, not even its marks
    expect(await monthOf('key-blessed')).toEqual([
      { usage: { tokens: 7, requests: 1 }, leases: 1 },
    ]);

    const again = await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );
    expect(again.setAside).toEqual([]);
    expect(await monthOf('key-cursed')).toEqual([{ usage: { tokens: 5, requests: 1 }, leases: 1 }]);
    expect(await monthOf('key-blessed')).toEqual([
      { usage: { tokens: 7, requests: 1 }, leases: 1 },
    ]);
  });

  it('never happens to leases that merely share a row: ten of 31 custom metrics each count in full', async () => {
    const limiter = table.limiter();
    for (let i = 0; i < 10; i++) {
      const custom = Object.fromEntries(Array.from({ length: 31 }, (_, j) => [`c${i}_${j}`, 1]));
      expect((await lease(limiter, 'key-wide', custom)).allowed).toBe(true);
    }

    const report = await new UsageAggregator({ store: table.store, alertSettleMs: 0 }).apply(
      await streamed(table),
    );

    expect(report.setAside).toEqual([]);
    const [wide] = await monthOf('key-wide');
    expect(Object.keys(wide?.usage ?? {}).length).toBe(310 + 1); // and requests, 1 a call
    expect(wide?.usage.requests).toBe(10);
    expect(wide?.leases).toBe(10);
  });

  it('leaves out only the row DynamoDB refuses: a sibling counts in its own rows when the org row is full', async () => {
    const limiter = table.limiter();
    const family = (entity: string): UsageContext => ({
      resource: 'm',
      scopes: [
        { entity, timezone: 'UTC' },
        { entity: 'org-full', timezone: 'UTC' },
      ],
    });
    const leaseIn = (entity: string, usage: Record<string, number>) =>
      limiter.acquire({
        checks: [scope(entity, 'm', [tokens(1_000_000)])],
        usage,
        context: family(entity),
      });
    expect((await leaseIn('key-full-a', { requests: 1 })).allowed).toBe(true);
    const aggregator = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await aggregator.apply(await streamed(table));
    // The org's hour row as thousands of another key's custom metric names leave it: within a
    // few bytes of DynamoDB's 400 KB an item (one attribute stands in for the thousands).
    const orgRows = await table.store.query('usage#org-full', { limit: 10 });
    const month = orgRows.items.find((row) => row.key.sk.startsWith('u#'))?.key;
    if (!month) throw new Error('no hour row for org-full');
    for (let size = 409_600; ; size -= 16) {
      const set = [{ attr: 'm_padding', value: 'q'.repeat(size) }];
      if (
        await table.store.update({ key: month, set }).then(
          () => true,
          () => false,
        )
      )
        break;
    }
    const before = await table.store.get(month);

    // A sibling's first tokens: its rows take new attributes, the org's full row refuses them.
    const usage = { input_tokens: 50, output_tokens: 20, tokens: 70, requests: 1 };
    expect((await leaseIn('key-full-b', usage)).allowed).toBe(true);
    const report = await aggregator.apply(await streamed(table));

    // The org's hour row alone is set aside: it counts nothing of the sibling's call.
    expect(report.setAside).toEqual([
      expect.objectContaining({ row: expect.stringMatching(/^usage#org-full\nu#/), left: 'all' }),
    ]);
    expect(await monthOf('key-full-b')).toEqual([{ usage, leases: 1 }]);
    expect(figures(await table.store.get(month))).toEqual(figures(before)); // not half-written
  });

  it('is told apart from an outage: DynamoDB refusing an item past 400 KB is not "unavailable"', async () => {
    const key = { pk: 'usage#test', sk: 'big' };
    await table.store.update({ key, set: [{ attr: 'blob', value: 'x'.repeat(395_000) }] });

    const grown = table.store.transact([
      { key, set: [{ attr: 'more', value: 'y'.repeat(20_000) }] },
    ]);

    await expect(grown).rejects.toMatchObject({ code: 'internal' });
  });
});

describe('two readers that split one shard’s records differently', () => {
  /** An acquire's usage event (or its cancellation) on `entity`'s item, at `sequence`. */
  const event = (
    entity: string,
    lease: string,
    version: 0 | -1,
    tokens: number,
    sequence: number,
  ) =>
    ({
      key: itemKeys.entityBucket(entity, 'm'),
      newImage: {
        ev: JSON.stringify([
          lease,
          version,
          Date.now(),
          Date.now() + 60_000,
          { tokens },
          ['m', [[entity]]],
        ]),
      },
      position: { shard: 'shard-1', sequence: String(sequence), atMs: Date.now() },
    }) satisfies ItemChange;

  it('count a refused call’s estimate and its cancellation together, whoever counts which', async () => {
    const entity = 'key-split';
    const [taken, cancelled, next] = [
      event(entity, 'L1', 0, 5, 1),
      event(entity, 'L1', -1, 5, 2),
      event(entity, 'L2', 0, 7, 3),
    ];
    const a = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    const b = new UsageAggregator({ store: table.store, alertSettleMs: 0 });
    await a.apply([taken, cancelled]); // adds nothing, but has counted both
    await b.apply([taken]); // a batch boundary of its own
    await a.apply([next]);
    await b.apply([cancelled, next]);

    const rows = await usageHistory(table.store, {
      entity,
      granularity: 'day',
      fromMs: Date.now() - 86_400_000,
      toMs: Date.now() + 86_400_000,
    });
    expect(rows.map((r) => [r.usage, r.leases])).toEqual([[{ tokens: 7 }, 1]]);
  });
});
