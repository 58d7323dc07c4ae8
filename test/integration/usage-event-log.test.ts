/**
 * Usage history counts a lease's first cancellation after its counted event, and no other
 * (usage/event-log.ts): stream records built as the hot path writes them (an item's `ev`
 * attribute changing), handed to the aggregator replayed, reordered and split as the stream's
 * delivery allows, and to two readers; and usage contexts no row can hold.
 */
import {
  type AdminStore,
  itemKeys,
  Limiter,
  type Store,
  StoreUnavailableError,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import type { ItemChange, ItemUpdate } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { check, tpm } from '../support/limits.js';
import { streamed } from '../support/streams.js';
import { fileTable, manualClock } from '../support/table.js';

const table = fileTable('usage-event-log');

const SHARD = 'shardId-00000001700000000000-aaaaaaaa';
const NOW = Date.now();
const RESOURCE = 'gpt-4o';

/**
 * A usage event as decision.ts writes it: [lease, version, acquired at, expires at, usage,
 * context]. Lease ids are random; here each entity has its own.
 */
const ev = (lease: string, version: number, atMs: number, tokens: number, entity: string) =>
  JSON.stringify([
    `${entity}.${lease}`,
    version,
    atMs,
    atMs + 3_600_000,
    { tokens },
    [RESOURCE, [[entity]]],
  ]);

/** The records of one item's `ev` attribute changing through `values`, from sequence `from` on. */
function itemChanges(
  entity: string,
  values: readonly string[],
  options: { from?: number; atMs?: number; shard?: string } = {},
): ItemChange[] {
  const key = itemKeys.entityBucket(entity, RESOURCE);
  const from = options.from ?? 100;
  return values.map((value, i) => ({
    key,
    ...(i > 0 ? { oldImage: { pk: key.pk, sk: key.sk, ev: values[i - 1] as string } } : {}),
    newImage: { pk: key.pk, sk: key.sk, ev: value },
    position: {
      shard: options.shard ?? SHARD,
      sequence: String(from + 100 * i),
      atMs: options.atMs ?? NOW,
    },
  }));
}

async function tokensOf(store: AdminStore, entity: string): Promise<number> {
  const rows = await usageHistory(store, {
    entity,
    granularity: 'day',
    fromMs: NOW - 3 * 86_400_000,
    toMs: NOW + 86_400_000,
  });
  return rows.reduce((n, r) => n + (r.usage.tokens ?? 0), 0);
}

describe('a refused call whose cancellation was written alone twice (another event between)', () => {
  // The stream of one item: E (lease L, 100 tokens), its cancellation written alone, another
  // call's event X (30 tokens), and the same cancellation written alone again (its first answer
  // was lost): what deadlines.test.ts's 'cancelled-twice' writes. History must say 30.
  const records = (entity: string, atMs = NOW) =>
    itemChanges(entity, [
      ev('lease-L', 0, atMs, 100, entity),
      ev('lease-L', -1, atMs, 100, entity),
      ev('lease-X', 0, atMs, 30, entity),
      ev('lease-L', -1, atMs, 100, entity),
    ]);

  it('counts 30 once in order, and still 30 after the batch is delivered again out of order', async () => {
    // Lambda: "If records are processed more than once, they might be processed out of order."
    const entity = 'reordered-replay';
    const [e, ca1, x, ca2] = records(entity) as [ItemChange, ItemChange, ItemChange, ItemChange];
    await new UsageAggregator({ store: table.store }).apply([e, ca1, x, ca2]);
    expect(await tokensOf(table.store, entity)).toBe(30);

    await new UsageAggregator({ store: table.store }).apply([e, x, ca2, ca1]);
    expect(await tokensOf(table.store, entity)).toBe(30);
  });
});

describe('a refused call whose event is older than the stream keeps, and its give-back is not', () => {
  it('is not counted in usage history: its cancellation takes back nothing never counted', async () => {
    // The acquire wrote its event just over 24 hours ago; the give-back that carried its
    // cancellation landed a minute later (a give-back is retried for as long as a lease lives).
    // A reader that comes to both now does not count the event (marks.ts), so neither the
    // cancellation: history must not say -100 for a call that was never admitted.
    const entity = 'expired-event';
    const acquiredAt = NOW - 24 * 3_600_000 - 60_000;
    const key = itemKeys.entityBucket(entity, RESOURCE);
    const [e, c] = [
      ev('lease-old', 0, acquiredAt, 100, entity),
      ev('lease-old', -1, acquiredAt, 100, entity),
    ];
    const changes: ItemChange[] = [
      {
        key,
        newImage: { ...key, ev: e },
        position: { shard: SHARD, sequence: '100', atMs: acquiredAt },
      },
      {
        key,
        oldImage: { ...key, ev: e },
        newImage: { ...key, ev: c },
        position: { shard: SHARD, sequence: '200', atMs: NOW - 24 * 3_600_000 + 60_000 },
      },
    ];

    await new UsageAggregator({ store: table.store }).apply(changes);

    expect(await tokensOf(table.store, entity)).toBe(0);
  });
});

describe('a usage context no row can hold', () => {
  it('is refused by the engine before anything is written, naming the field', async () => {
    const limiter = table.limiter();
    const own = check([tpm(1_000)], 'entity');
    const contexts = [
      [{ resource: RESOURCE, scopes: [{ entity: 'z', timezone: 'Mars/Olympus' }] }, 'timezone'],
      [{ resource: RESOURCE, scopes: [{ entity: '*', timezone: 'UTC' }] }, 'entity'],
      [{ resource: 'a b', scopes: [] }, 'resource'],
      [
        {
          resource: RESOURCE,
          scopes: [
            { entity: 'twice', timezone: 'UTC' },
            { entity: 'twice', timezone: 'UTC' },
          ],
        },
        'scopes',
      ],
    ] as const;
    for (const [context, field] of contexts)
      await expect(
        limiter.acquire({ checks: [own], usage: { tokens: 10 }, context }),
      ).rejects.toMatchObject({ code: 'invalid_request', field: expect.stringContaining(field) });
    expect(await table.store.get(own.key)).toBeUndefined();
  });

  it('written by another program, is not counted, and holds up no other lease of its batch', async () => {
    const entity = 'placed-neighbour';
    const changes = [
      ...itemChanges('unplaced-1', [
        JSON.stringify([
          'lease-mars',
          0,
          NOW,
          NOW + 3_600_000,
          { tokens: 10 },
          [RESOURCE, [['m', 'Mars/Olympus']]],
        ]),
      ]),
      ...itemChanges(
        'unplaced-2',
        [
          JSON.stringify([
            'lease-star',
            0,
            NOW,
            NOW + 3_600_000,
            { tokens: 10 },
            [RESOURCE, [['*']]],
          ]),
        ],
        { from: 1_000 },
      ),
      ...itemChanges(entity, [ev('lease-ok', 0, NOW, 10, entity)], { from: 2_000 }),
    ];

    const report = await new UsageAggregator({ store: table.store }).apply(changes);

    expect(report.unplaced).toEqual(['lease-mars', 'lease-star']);
    expect(await tokensOf(table.store, entity)).toBe(10);
  });
});

describe('a give-back carrying the cancellation, held in the store past its lost answer', () => {
  it('is not counted in usage history when it lands after the cancellation written alone', async () => {
    // The refused call's give-back, carrying the cancellation, is sent; its answer is lost while
    // DynamoDB still holds it, and four other writes follow: the item cannot tell, so the
    // cancellation goes alone. Then the held give-back lands (a busy bucket's increment: its
    // condition still holds). The stream: the event, then two cancellations: one counts.
    const clock = manualClock(NOW);
    const own = check([tpm(1_000)], 'entity');
    const full = check([tpm(100)], 'resource');
    const other = table.limiter({ clock: clock.now });
    await other.acquire({ checks: [full], usage: { tokens: 100 } }); // refuses the call below
    let held: ItemUpdate | undefined;
    let writes = 0;
    const store: Store = {
      async update(u) {
        if (u.key.pk === own.key.pk && u.key.sk === own.key.sk && ++writes === 2) {
          held = u; // the give-back: sent, not applied yet, its answer lost
          for (let i = 0; i < 4; i++) await other.acquire({ checks: [own], usage: { tokens: 10 } });
          throw new StoreUnavailableError('DynamoDB unavailable: socket hang up');
        }
        return table.store.update(u);
      },
      transact: (w) => table.store.transact(w),
      get: (k) => table.store.get(k),
    };
    const entity = 'held-give-back';
    const limiter = new Limiter({ store, clock: clock.now, combiner: undefined });
    const context = { resource: RESOURCE, scopes: [{ entity, timezone: 'UTC' }] };
    const result = await limiter.acquire({ checks: [own, full], usage: { tokens: 100 }, context });
    await limiter.engine.idle();
    expect(result.allowed).toBe(false);
    expect((await table.store.update(held as ItemUpdate)).ok).toBe(true); // it lands now

    const mine = (await streamed(table)).filter((c) => String(c.newImage?.ev).includes(entity));
    await new UsageAggregator({ store: table.store }).apply(mine);

    expect(await tokensOf(table.store, entity)).toBe(0);
  });
});

/**
 * One item's records: another lease W (5), E (lease L, 100), its cancellation C1, another call's
 * X (30), and the cancellation again, C2. Usage history must end at 35.
 */
const cancelledTwice = (entity: string) =>
  itemChanges(entity, [
    ev('lease-W', 0, NOW, 5, entity),
    ev('lease-L', 0, NOW, 100, entity),
    ev('lease-L', -1, NOW, 100, entity),
    ev('lease-X', 0, NOW, 30, entity),
    ev('lease-L', -1, NOW, 100, entity),
  ]) as [ItemChange, ItemChange, ItemChange, ItemChange, ItemChange];

describe('two readers of the stream, batched apart, one behind the other', () => {
  it('count a lease cancelled twice once', async () => {
    // Reader A reads [W E C1] then [X C2]; reader B has read only [E] when A reads C2 (B has
    // logged L's event, not yet counted C1), then reads on.
    const entity = 'two-readers';
    const [w, e, c1, x, c2] = cancelledTwice(entity);
    const a = new UsageAggregator({ store: table.store });
    const b = new UsageAggregator({ store: table.store });

    await a.apply([w, e, c1]);
    await b.apply([e]);
    await a.apply([x, c2]);
    await b.apply([c1, x, c2]);

    expect(await tokensOf(table.store, entity)).toBe(35);
  });
});

describe('one reader, an earlier stretch of the shard delivered again, split, after it moved on', () => {
  it('does not count a second cancellation of a lease whose first one it counted', async () => {
    // The reader counts [W E C1]; then [E] comes again (a replay, split from that batch); then
    // [X C2] for the first time: C2's lookup finds the replay's log of E first, and C1 is
    // counted all the same.
    const entity = 'split-replay';
    const [w, e, c1, x, c2] = cancelledTwice(entity);
    const reader = new UsageAggregator({ store: table.store });

    await reader.apply([w, e, c1]);
    expect(await tokensOf(table.store, entity)).toBe(5);
    await reader.apply([e]); // delivered again, split
    expect(await tokensOf(table.store, entity)).toBe(5);
    await reader.apply([x, c2]);

    expect(await tokensOf(table.store, entity)).toBe(35);
  });
});

describe('a new reader (npm start started again) that finds the event too old, the cancellation not', () => {
  it('takes back the estimate another reader counted', async () => {
    // Reader A counts E (lease L, 100) and stops. L's cancellation was written alone 50 minutes
    // later (a cancellation is retried for as long as a lease lives). A new reader starts 24 h
    // 10 min after E and reads the stream from its oldest record: E is older than the stream
    // keeps (not counted again), the cancellation is not, and it counts: A counted the event.
    const entity = 'old-event-new-reader';
    const cancelledAt = NOW + 50 * 60_000;
    const [e, c1] = itemChanges(entity, [
      ev('lease-L', 0, NOW, 100, entity),
      ev('lease-L', -1, NOW, 100, entity),
    ]) as [ItemChange, ItemChange];
    const c1Late = {
      ...c1,
      position: { ...(c1.position as NonNullable<ItemChange['position']>), atMs: cancelledAt },
    };
    const a = new UsageAggregator({ store: table.store, clock: () => NOW });
    await a.apply([e]);
    expect(await tokensOf(table.store, entity)).toBe(100);

    const later = NOW + 24 * 3_600_000 + 10 * 60_000;
    const b = new UsageAggregator({ store: table.store, clock: () => later });
    await b.apply([e, c1Late]);

    expect(await tokensOf(table.store, entity)).toBe(0);
  });
});

describe('a usage event whose lease id the engine never makes (written by another program)', () => {
  /** A usage event with the lease id as given. */
  const raw = (lease: string, version: number, tokens: number, entity: string) =>
    JSON.stringify([lease, version, NOW, NOW + 3_600_000, { tokens }, [RESOURCE, [[entity]]]]);

  it('is not counted, reported unplaced, and lends its id to no other lease', async () => {
    // `p +q` would be logged as two entries, one of them `+q`: another lease's cancellation
    // written alone, with no event of its own, would count.
    const [a, b] = ['spaced-a', 'spaced-b'];
    const [e] = itemChanges(a, [raw('p +q', 0, 100, a)]) as [ItemChange];
    const [c] = itemChanges(b, [raw('q', -1, 40, b)], { from: 1_000 }) as [ItemChange];
    const reader = new UsageAggregator({ store: table.store });

    expect((await reader.apply([e])).unplaced).toEqual(['p +q']);
    await reader.apply([c]);

    expect(await tokensOf(table.store, a)).toBe(0);
    expect(await tokensOf(table.store, b)).toBe(0);
  });

  it('holds up no batch when it is too long for a key or a log item', async () => {
    const entity = 'long-ids';
    const long = 'x'.repeat(1_100); // a claim's key of over 1 KB; five of them: a 500 KB log item
    const changes = [
      ...itemChanges(entity, [raw(long, 0, 100, entity), raw(long, -1, 100, entity)]),
      ...[0, 1, 2, 3, 4].map(
        (i) =>
          itemChanges(entity, [raw(`${i}${'y'.repeat(100_000)}`, 0, 10, entity)], {
            from: 1_000 + i,
          })[0] as ItemChange,
      ),
      ...itemChanges(entity, [ev('lease-ok', 0, NOW, 7, entity)], { from: 2_000 }),
    ];

    const report = await new UsageAggregator({ store: table.store }).apply(changes);

    expect(report.unplaced).toHaveLength(7);
    expect(await tokensOf(table.store, entity)).toBe(7);
  });
});
