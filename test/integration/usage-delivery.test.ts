/**
 * The usage aggregator's counting (marks): one workload on table W, its stream counted once,
 * cleanly, into a reference table R, and counted under hostile delivery (crash halfway then
 * redelivery, bisected redelivery, lost answers, a duplicated record, overlapping readers) into a
 * table H. What each history says must be the same as R's, and R's the same as the workload's.
 */
import { randomInt } from 'node:crypto';
import {
  type AdminStore,
  type ItemKey,
  itemKeys,
  parseLimits,
  SluiceError,
  topEntities,
  UsageAggregator,
  usageHistory,
} from '@sluice/core';
import type { ItemChange, ItemUpdate, UpdateResult } from '@sluice/core/internal';
import { startStreamReader } from '@sluice/local';
import { beforeAll, describe, expect, it } from 'vitest';
import { localStreams, streamed } from '../support/streams.js';
import { freshTable, type TestTable } from '../support/table.js';

type Totals = Record<string, number>;
const add = (into: Totals, usage: Totals) => {
  for (const [k, v] of Object.entries(usage)) into[k] = (into[k] ?? 0) + v;
};

const KEYS = ['key-a', 'key-b', 'key-c'];
const ENTITIES = [...KEYS, 'org-h', '*'];
const check = (entity: string, limit: number) => ({
  scope: 'entity' as const,
  key: itemKeys.entityBucket(entity, 'gpt'),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit, per: 'minute' }]),
});
const ctx = (entity: string) => ({
  resource: 'gpt',
  scopes: [
    { entity, timezone: 'UTC' },
    { entity: 'org-h', timezone: 'Asia/Kolkata' },
  ],
});

/** A store that forwards to the real one, with a hook around each update. */
class Wrapped implements AdminStore {
  constructor(
    readonly inner: AdminStore,
    readonly hook: (u: ItemUpdate, go: () => Promise<UpdateResult>) => Promise<UpdateResult>,
  ) {}
  update(u: ItemUpdate) {
    return this.hook(u, () => this.inner.update(u));
  }
  transact(...a: Parameters<AdminStore['transact']>) {
    return this.inner.transact(...a);
  }
  get(k: ItemKey) {
    return this.inner.get(k);
  }
  query(...a: Parameters<AdminStore['query']>) {
    return this.inner.query(...a);
  }
}

let W: TestTable;
let changes: ItemChange[] = [];
const expected = new Map<string, { usage: Totals; leases: number }>();

async function snapshot(store: AdminStore) {
  const out: Record<string, unknown> = {};
  for (const entity of ENTITIES) {
    const rows = await usageHistory(store, {
      entity,
      granularity: 'hour',
      fromMs: Date.now() - 2 * 86_400_000,
      toMs: Date.now() + 86_400_000,
    });
    const usage: Totals = {};
    let leases = 0;
    for (const r of rows) {
      add(usage, r.usage);
      leases += r.leases;
    }
    out[entity] = { usage, leases };
  }
  for (const metric of ['tokens', 'custom_x']) {
    const top = await topEntities(store, {
      period: 'month',
      date: new Date().toISOString().slice(0, 10),
      metric,
      by: 'usage',
      limit: 10,
    });
    out[`top:${metric}`] = top;
  }
  return out;
}

beforeAll(async () => {
  W = await freshTable('u30-count-w');
  const limiters = [W.limiter(), W.limiter()];
  const pick = () => limiters[randomInt(2)] as (typeof limiters)[number];
  const all = { usage: {} as Totals, leases: 0 };
  await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const entity = KEYS[i % 3] as string;
      const usage = {
        input_tokens: 100 + randomInt(300),
        output_tokens: 10 + randomInt(50),
        custom_x: 5,
      };
      const limit = entity === 'key-c' ? 2_000 : 10_000_000;
      const r = await pick().acquire({
        checks: [check(entity, limit)],
        usage,
        context: ctx(entity),
      });
      if (!r.allowed) return;
      let final: Totals = {
        ...usage,
        tokens: usage.input_tokens + usage.output_tokens,
        requests: 1,
      };
      const fate = i % 5;
      if (fate === 1) {
        await pick().adjust(r.leaseId, { output_tokens: usage.output_tokens + 3 });
        await pick().adjust(r.leaseId, { output_tokens: usage.output_tokens + 9 });
        final = {
          ...final,
          output_tokens: usage.output_tokens + 9,
          tokens: (final.tokens ?? 0) + 9,
        };
      } else if (fate === 2) {
        // settled below the estimate, custom metric down to 1
        await pick().release(r.leaseId, { input_tokens: 7, output_tokens: 3, custom_x: 1 });
        final = { input_tokens: 7, output_tokens: 3, custom_x: 1, tokens: 10, requests: 1 };
      } else if (fate === 3) {
        await pick().release(r.leaseId);
        return;
      }
      for (const who of [entity, 'org-h', '*']) {
        const e = expected.get(who) ?? { usage: {}, leases: 0 };
        add(e.usage, final);
        e.leases += 1;
        expected.set(who, e);
      }
    }),
  );
  void all;
  changes = await streamed(W);
  const R = await freshTable('u30-count-r');
  await new UsageAggregator({ store: R.store, alertSettleMs: 0 }).apply(changes);
  reference = await snapshot(R.store);
});
let reference: Record<string, unknown>;

describe('counting', () => {
  it('a clean pass counts what the workload did', async () => {
    for (const entity of ENTITIES) {
      expect({ entity, ...(reference[entity] as object) }).toEqual({
        entity,
        ...(expected.get(entity) ?? { usage: {}, leases: 0 }),
      });
    }
  });

  it('crash after N writes (thrown before the write), redelivered until it succeeds', async () => {
    const H = await freshTable('u30-count-h1');
    for (const n of [0, 1, 2, 3, 5, 8, 13]) {
      let writes = 0;
      const store = new Wrapped(H.store, async (_u, go) => {
        if (++writes > n) throw new SluiceError('unavailable', 'throttled (hostile)');
        return go();
      });
      await new UsageAggregator({ store, alertSettleMs: 0 }).apply(changes).catch(() => {});
      await new Promise((r) => setTimeout(r, 50)); // let stray workers finish
    }
    await new UsageAggregator({ store: H.store, alertSettleMs: 0 }).apply(changes);
    expect(await snapshot(H.store)).toEqual(reference);
  });

  it('answers lost after the write applied, then bisected redelivery', async () => {
    const H = await freshTable('u30-count-h2');
    let writes = 0;
    const lossy = new Wrapped(H.store, async (_u, go) => {
      const out = await go();
      if (++writes % 3 === 0) throw new SluiceError('unavailable', 'answer lost (hostile)');
      return out;
    });
    await new UsageAggregator({ store: lossy, alertSettleMs: 0 }).apply(changes).catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    const half = Math.floor(changes.length / 2);
    const agg = new UsageAggregator({ store: H.store, alertSettleMs: 0 });
    await agg.apply(changes.slice(0, half));
    await agg.apply(changes.slice(half));
    await agg.apply(changes); // and the whole again
    expect(await snapshot(H.store)).toEqual(reference);
  });

  it('two readers, each in order, with different batch boundaries, at once', async () => {
    const H = await freshTable('u30-count-h3');
    const inBatches = async (size: number) => {
      const agg = new UsageAggregator({ store: H.store, alertSettleMs: 0 });
      for (let i = 0; i < changes.length; i += size) await agg.apply(changes.slice(i, i + size));
    };
    await Promise.all([inBatches(7), inBatches(11), inBatches(changes.length)]);
    expect(await snapshot(H.store)).toEqual(reference);
  });

  it('a batch holding the same record twice counts it once', async () => {
    const H = await freshTable('u30-count-h4');
    const agg = new UsageAggregator({ store: H.store, alertSettleMs: 0 });
    await agg.apply([...changes, ...changes]);
    expect(await snapshot(H.store)).toEqual(reference);
  });

  it('the local stream reader: crashes halfway (several times), and a second reader, count once', async () => {
    // A table of its own, so the reader reads this workload's records from its stream.
    const L = await freshTable('u30-count-local');
    const limiters = [L.limiter(), L.limiter()];
    const want = { usage: {} as Totals, leases: 0 };
    for (let i = 0; i < 40; i++) {
      const entity = KEYS[i % 3] as string;
      const usage = { input_tokens: 100 + i, output_tokens: 10, custom_x: 5 };
      const r = await (limiters[i % 2] as (typeof limiters)[number]).acquire({
        checks: [check(entity, 10_000_000)],
        usage,
        context: ctx(entity),
      });
      if (!r.allowed) throw new Error('refused');
      if (i % 4 === 1) {
        await (limiters[(i + 1) % 2] as (typeof limiters)[number]).release(r.leaseId, {
          input_tokens: 1,
          output_tokens: 1,
          custom_x: 1,
        });
        add(want.usage, { input_tokens: 1, output_tokens: 1, custom_x: 1, tokens: 2, requests: 1 });
      } else if (i % 4 === 2) {
        await (limiters[i % 2] as (typeof limiters)[number]).release(r.leaseId);
        continue;
      } else
        add(want.usage, {
          ...usage,
          tokens: usage.input_tokens + usage.output_tokens,
          requests: 1,
        });
      want.leases++;
    }
    let failures = 0;
    let writes = 0;
    const flaky = new Wrapped(L.store, async (_u, go) => {
      if (++writes % 7 === 0 && failures < 6) {
        failures++;
        throw new SluiceError('unavailable', 'throttled (hostile)');
      }
      return go();
    });
    const readers = await Promise.all(
      [flaky, L.store].map((store) =>
        startStreamReader({
          client: L.client,
          streams: localStreams(),
          tableName: L.tableName,
          apply: async (batch) => {
            await new UsageAggregator({ store, alertSettleMs: 0 }).apply(batch);
          },
          onError: () => {},
          idleMs: 20,
          minBackoffMs: 10,
        }),
      ),
    );
    for (const r of readers) await r.drain();
    for (const r of readers) await r.drain();
    for (const r of readers) await r.stop();
    expect(failures).toBeGreaterThan(0);
    const got = await snapshot(L.store);
    expect(got['org-h']).toEqual(want);
    expect(got['*']).toEqual(want);
  });
});
