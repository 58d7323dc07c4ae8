/**
 * `npm run capacity` — what a traffic mix costs one Sluice deployment: write units per second on
 * the hottest item and per shard, the shards it needs, the account quotas it meets, and the AWS
 * bill per million LLM calls. A model, not a measurement: its per-call write counts come from the
 * whole default-mix call `npm run bench:docs` measured (acquire, adjust and release over three
 * scopes, and the usage aggregator's writes for it), read from docs/benchmark.json; other mixes
 * scale them per scope and per settlement.
 *
 *   npm run -s capacity                      the README's three mixes
 *   npm run -s capacity -- --calls 2500 --scopes 2 --shared 0.5 --adjusts 4
 *   npm run -s capacity -- --readme          rewrites the README's capacity section
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { table } from './md-table.js';

/** AWS list prices, us-east-1, as published on 2026-11-23 (on-demand DynamoDB since 2024-11-01). */
export const PRICES = {
  date: '2026-11-23',
  region: 'us-east-1',
  /** DynamoDB on-demand, USD per million write request units. */
  dynamodbWriteMillion: 0.625,
  /** Lambda arm64, USD per GB-second, and per million requests. */
  lambdaGbSecond: 0.0000133334,
  lambdaRequestMillion: 0.2,
  /** API Gateway HTTP API, USD per million requests (first 300 million a month). */
  httpApiMillion: 1.0,
} as const;

/** What one partition writes per second, and the share of it a shard is planned to use. */
export const PARTITION_WCU = 1_000;
export const SHARD_TARGET = 0.5;

/** Account quotas a deployment meets first (defaults; all can be raised). */
export const QUOTAS = {
  /** On-demand table throughput, WCU/s per table. */
  tableWcu: 40_000,
  /** Concurrent Lambda executions per account and region. */
  lambdaConcurrency: 1_000,
  /** HTTP API requests per second per account and region. */
  httpApiRps: 10_000,
} as const;

/** What the model takes from one bench run (docs/benchmark.json, written by `bench:docs`). */
export interface BenchFigures {
  /** When, and by what, they were measured. */
  readonly measured: string;
  /** One acquire's WCU per scope it writes. */
  readonly acquireWcuPerScope: number;
  /** One settlement's WCU per item of its transaction (the lease item and each scope's). */
  readonly settleWcuPerItem: number;
  /** The usage aggregator's WCU per call, every call a different key under one org. */
  readonly aggregatorWcu: number;
  /** The whole default-mix call they come from, as measured. */
  readonly wholeCall: WholeCall;
}

/** What the bench measured of one whole call of the default mix (`whole_call_wcu`). */
export interface WholeCall {
  readonly scopes: number;
  readonly adjusts: number;
  readonly acquire: number;
  readonly settle: number;
  readonly usage_history: number;
  readonly total: number;
}

/** The capacity figures of a bench run: its whole call, per scope and per settlement item. */
export function capacityFigures(result: {
  readonly run: { readonly started: string };
  readonly whole_call_wcu: WholeCall;
}): BenchFigures {
  const w = result.whole_call_wcu;
  const settlements = w.adjusts + 1;
  return {
    measured: `npm run bench:docs, ${result.run.started.slice(0, 16).replace('T', ' ')} UTC`,
    acquireWcuPerScope: Number((w.acquire / w.scopes).toFixed(4)),
    settleWcuPerItem: Number((w.settle / settlements / (w.scopes + 1)).toFixed(4)),
    aggregatorWcu: w.usage_history,
    wholeCall: {
      scopes: w.scopes,
      adjusts: w.adjusts,
      acquire: w.acquire,
      settle: w.settle,
      usage_history: w.usage_history,
      total: w.total,
    },
  };
}

const FIGURES_FILE = fileURLToPath(new URL('../../docs/benchmark.json', import.meta.url));

/** The figures of the last `bench:docs` run. */
export function benchFigures(file = FIGURES_FILE): BenchFigures {
  if (!existsSync(file))
    throw new Error(`no ${file}: run \`npm run bench:docs\` (it measures what the model takes)`);
  return JSON.parse(readFileSync(file, 'utf8')) as BenchFigures;
}

/** A traffic mix. */
export interface Mix {
  /** LLM calls per second. */
  readonly calls: number;
  /** Scope items each call writes (key, its ancestors with limits, the resource). */
  readonly scopes: number;
  /** Share of calls under the hottest shared limit (an org, a provider-wide model limit). */
  readonly shared: number;
  /** Adjusts per call before its release (streamed calls report as they go). */
  readonly adjusts: number;
  /** The usage aggregator's WCU per settled lease (from the bench: see {@link BenchFigures}). */
  readonly aggregatorWcu: number;
  /** One acquire's WCU per scope, and a settlement's per item (from the bench). */
  readonly acquireWcuPerScope: number;
  readonly settleWcuPerItem: number;
  /** Billed milliseconds of one handler invocation (one DynamoDB round trip and the edge). */
  readonly handlerMs: number;
  /** Lambda memory (the construct's default). */
  readonly memoryMb: number;
}

/** The README's mix, with the bench's figures. */
export function defaultMix(figures: BenchFigures = benchFigures()): Omit<Mix, 'calls'> {
  return {
    scopes: 3,
    shared: 1,
    adjusts: 1,
    aggregatorWcu: figures.aggregatorWcu,
    acquireWcuPerScope: figures.acquireWcuPerScope,
    settleWcuPerItem: figures.settleWcuPerItem,
    handlerMs: 10,
    memoryMb: 512,
  };
}

export interface Capacity {
  readonly mix: Mix;
  /** WCU of one call: acquire, settlements, and the aggregator's. */
  readonly wcuPerCall: { acquire: number; settle: number; aggregator: number; total: number };
  readonly tableWcuPerSecond: number;
  /** WCU/s on the hottest item unsharded: its acquire write and its part of every settlement. */
  readonly hottestItemWcuPerSecond: number;
  /** Shards that keep each under {@link SHARD_TARGET} of a partition (a power of two). */
  readonly shards: number;
  readonly perShardWcuPerSecond: number;
  readonly lambdaConcurrency: number;
  readonly httpRequestsPerSecond: number;
  /** USD per million LLM calls. */
  readonly costPerMillionCalls: {
    dynamodb: number;
    lambda: number;
    httpApi: number;
    total: number;
  };
  /**
   * USD per million LLM calls made in process (`@sluice/client/in-process`): the same writes,
   * and the usage aggregator's invocations; no HTTP API and no Sluice function per call (the
   * caller's own function time is the caller's).
   */
  readonly inProcessCostPerMillionCalls: {
    dynamodb: number;
    lambda: number;
    total: number;
  };
  /** The default quotas this mix passes. */
  readonly overQuota: string[];
}

const fmt = (x: number) => x.toLocaleString('en-US');
const round2 = (x: number) => Number(x.toFixed(2));
/** What `wcu` write units a call cost per million calls, in USD. */
const usd = (wcu: number) => `${round2(wcu * PRICES.dynamodbWriteMillion)} USD`;

/** The model. */
export function capacity(mix: Mix): Capacity {
  const settlements = mix.adjusts + 1;
  const acquire = mix.scopes * mix.acquireWcuPerScope;
  // The lease item and every scope item, in each settlement's transaction.
  const settle = settlements * mix.settleWcuPerItem * (mix.scopes + 1);
  const wcu = acquire + settle + mix.aggregatorWcu;
  const hottest = mix.calls * mix.shared * (1 + 2 * settlements);
  let shards = 1;
  while (hottest / shards > PARTITION_WCU * SHARD_TARGET && shards < 64) shards *= 2;
  const invocations = 1 + settlements; // acquire, adjusts, release
  const aggregatorInvocations = (mix.scopes + settlements) / 100; // stream records in batches of 100
  const lambdaCost = (handlerInvocations: number) =>
    ((handlerInvocations * mix.handlerMs + aggregatorInvocations * 50) /
      1000 /
      (1024 / mix.memoryMb)) *
      1e6 *
      PRICES.lambdaGbSecond +
    (handlerInvocations + aggregatorInvocations) * PRICES.lambdaRequestMillion;
  const round = (x: number, digits = 2) => Number(x.toFixed(digits));
  const cost = {
    dynamodb: wcu * PRICES.dynamodbWriteMillion,
    lambda: lambdaCost(invocations),
    httpApi: invocations * PRICES.httpApiMillion,
  };
  const inProcessLambda = lambdaCost(0);
  const concurrency = (mix.calls * invocations * mix.handlerMs) / 1000;
  const httpRps = mix.calls * invocations;
  const overQuota = [
    ...(mix.calls * wcu > QUOTAS.tableWcu ? [`table ${fmt(QUOTAS.tableWcu)} WCU/s`] : []),
    ...(concurrency > QUOTAS.lambdaConcurrency
      ? [`Lambda concurrency ${fmt(QUOTAS.lambdaConcurrency)}`]
      : []),
    ...(httpRps > QUOTAS.httpApiRps ? [`HTTP API ${fmt(QUOTAS.httpApiRps)} requests/s`] : []),
  ];
  return {
    mix,
    wcuPerCall: { acquire, settle, aggregator: mix.aggregatorWcu, total: round(wcu) },
    tableWcuPerSecond: round(mix.calls * wcu, 0),
    hottestItemWcuPerSecond: round(hottest, 0),
    shards,
    perShardWcuPerSecond: round(hottest / shards, 0),
    lambdaConcurrency: round(concurrency, 1),
    httpRequestsPerSecond: round(httpRps, 0),
    costPerMillionCalls: {
      dynamodb: round(cost.dynamodb),
      lambda: round(cost.lambda),
      httpApi: round(cost.httpApi),
      total: round(cost.dynamodb + cost.lambda + cost.httpApi),
    },
    inProcessCostPerMillionCalls: {
      dynamodb: round(cost.dynamodb),
      lambda: round(inProcessLambda),
      total: round(cost.dynamodb + inProcessLambda),
    },
    overQuota,
  };
}

/** The README's section: one deployment at 100, 1,000 and 10,000 calls/s. */
export function readmeSection(figures: BenchFigures = benchFigures()): string {
  const d = defaultMix(figures);
  const rows = [100, 1_000, 10_000].map((calls) => capacity({ ...d, calls }));
  const first = rows[0] as Capacity;
  return [
    `Generated by \`npm run -s capacity -- --readme\` from the model in \`test/bench/capacity.ts\`, with the`,
    `WCU figures of one bench run (${figures.measured}; [Benchmark](docs/benchmark.md)).`,
    `Mix: ${d.scopes} scope items per call (key, org, provider-wide limit), every call under the`,
    `provider-wide limit, ${d.adjusts} adjust before each release,`,
    `every call a different key, handlers billed ${d.handlerMs} ms at ${d.memoryMb} MB. One call writes`,
    `${first.wcuPerCall.total} WCU, as the bench measured such a call whole: ${round2(first.wcuPerCall.acquire)} to acquire, ${round2(first.wcuPerCall.settle)} to settle`,
    `(an adjust and a release, each one transaction of the lease item and the scope items it moves;`,
    `DynamoDB bills a transaction 2 WCU an item), ${first.wcuPerCall.aggregator} for usage history. Prices: ${PRICES.region}, ${PRICES.date}; a`,
    `partition takes ${fmt(PARTITION_WCU)} WCU/s and a shard is planned at ${SHARD_TARGET * 100}% of one.`,
    '',
    `Per million calls: ${usd(first.wcuPerCall.acquire)} to acquire, ${usd(first.wcuPerCall.settle)} to settle, ${usd(first.wcuPerCall.aggregator)} for usage history (DynamoDB),`,
    `${first.costPerMillionCalls.lambda} USD of Lambda and ${first.costPerMillionCalls.httpApi} USD of HTTP API: **${first.costPerMillionCalls.total} USD**.`,
    `In process (\`@sluice/client/in-process\`: the same writes, no HTTP API and no Sluice function per`,
    `call; the time in your own function is yours): ${first.inProcessCostPerMillionCalls.dynamodb} USD of DynamoDB and ${first.inProcessCostPerMillionCalls.lambda} USD of`,
    `Lambda for the usage aggregator: **${first.inProcessCostPerMillionCalls.total} USD**.`,
    '',
    table(
      [
        'calls/s',
        'table WCU/s',
        'hottest item WCU/s',
        'shards',
        'WCU/s per shard',
        'Lambda concurrency',
        'HTTP requests/s',
        'USD per million calls (DynamoDB + Lambda + HTTP API)',
        'default quotas passed',
      ],
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'left', 'left'],
      rows.map((r) => [
        fmt(r.mix.calls),
        fmt(r.tableWcuPerSecond),
        fmt(r.hottestItemWcuPerSecond),
        String(r.shards),
        fmt(r.perShardWcuPerSecond),
        String(r.lambdaConcurrency),
        fmt(r.httpRequestsPerSecond),
        `${r.costPerMillionCalls.total} (${r.costPerMillionCalls.dynamodb} + ${r.costPerMillionCalls.lambda} + ${r.costPerMillionCalls.httpApi})`,
        r.overQuota.length ? r.overQuota.join(', ') : 'none',
      ]),
    ),
  ].join('\n');
}

const START = '<!-- capacity:start -->';
const END = '<!-- capacity:end -->';

/** The README with its capacity section replaced by {@link readmeSection}. */
export function withCapacitySection(readme: string): string {
  const from = readme.indexOf(START);
  const to = readme.indexOf(END);
  if (from < 0 || to < from) throw new Error(`the README has no ${START} … ${END} section`);
  return `${readme.slice(0, from + START.length)}\n${readmeSection()}\n${readme.slice(to)}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string' },
      scopes: { type: 'string' },
      shared: { type: 'string' },
      adjusts: { type: 'string' },
      'aggregator-wcu': { type: 'string' },
      readme: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  if (values.readme) {
    const file = fileURLToPath(new URL('../../README.md', import.meta.url));
    writeFileSync(file, withCapacitySection(readFileSync(file, 'utf8')));
    console.log('README.md: capacity section written');
  } else if (values.calls === undefined) {
    console.log(readmeSection());
  } else {
    const number = (raw: string | undefined, fallback: number, name: string) => {
      const x = raw === undefined ? fallback : Number(raw);
      if (!Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a number ≥ 0`);
      return x;
    };
    const mix = defaultMix();
    const result = capacity({
      ...mix,
      calls: number(values.calls, 0, 'calls'),
      scopes: number(values.scopes, mix.scopes, 'scopes'),
      shared: number(values.shared, mix.shared, 'shared'),
      adjusts: number(values.adjusts, mix.adjusts, 'adjusts'),
      aggregatorWcu: number(values['aggregator-wcu'], mix.aggregatorWcu, 'aggregator-wcu'),
    });
    console.log(values.json ? JSON.stringify(result, null, 2) : result);
  }
}
