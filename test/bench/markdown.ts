/**
 * docs/benchmark.md, written whole from one run of the bench: the run's date, command, Node and
 * machine, every figure in tables, the method beside them, and the targets judged against the
 * run. Nothing here holds a measured number: what a sentence says about the figures is decided
 * from the figures.
 *
 *   npm run bench:docs                              builds, runs the bench, writes the file
 *   npx tsx test/bench/markdown.ts docs/benchmark.md    renders the run the file holds again
 *   npx tsx test/bench/markdown.ts result.json          renders a saved `npm run -s bench -- --json`
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { table } from './md-table.js';
import type { BenchResult } from './run.js';

type Scenario = BenchResult['scenarios'][string];
const int = (x: number) => Math.round(x).toLocaleString('en-US');
/** Thousands separated, up to `digits` decimals. */
const grouped = (x: number, digits = 2) =>
  x.toLocaleString('en-US', { maximumFractionDigits: digits });
/** Milliseconds, thousands separated, one decimal. */
const millis = (x: number) =>
  x.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fixed = (x: number, digits: number) => x.toFixed(digits);
const times = (x: number) => `${x.toFixed(2)}×`;
const percent = (share: number) => `${(share * 100).toFixed(1)}%`;
const code = (text: string) => `\`${text}\``;
const signed = (x: number, digits = 0) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;

const SYSTEM = { sluice: 'Sluice', peer: 'peer', peer_in_memory_block: 'block' } as const;

function scenarioOf(r: BenchResult, name: string): Scenario {
  const s = r.scenarios[name];
  if (!s) throw new Error(`the run has no scenario ${name}`);
  return s;
}

/** The project's targets, each judged against the run. */
function targets(r: BenchResult): { target: string; measured: string; met: boolean }[] {
  const single = scenarioOf(r, 'single');
  const spreads = ['spread', 'spread_2', 'spread_3'].map((n) => scenarioOf(r, n));
  const contended = ['contended', 'contended_near_rate'].map((n) => [n, scenarioOf(r, n)] as const);
  const blockRatios = contended.map(([n, s]) => [
    n,
    s.sluice.ops_per_s / (s.peer_in_memory_block?.ops_per_s ?? Number.POSITIVE_INFINITY),
  ]) as [string, number][];
  const rcu = [
    ...Object.values(r.scenarios).map((s) => s.sluice.rcu_per_op),
    r.llm_call.rcu,
    r.stored_config.warm_cache.rcu,
  ];
  const wcuPerScope = [
    single.sluice.wcu_per_op,
    ...spreads.map((s) => s.sluice.wcu_per_op),
    r.stored_config.warm_cache.wcu / r.stored_config.warm_cache.scopes,
  ];
  const httpAboveEngine = r.local_api.median_ms_http_acquire - r.local_api.median_ms_engine_acquire;
  const c = r.cold_start;
  return [
    {
      target: 'at most one request per decision in `single` and `spread`',
      measured: `single ${fixed(single.sluice.requests_per_op, 3)}; spread ${spreads.map((s) => fixed(s.sluice.requests_per_op, 3)).join(', ')}`,
      met: [single, ...spreads].every((s) => s.sluice.requests_per_op <= 1),
    },
    {
      target: 'at most 1.05 requests per decision in the contended scenarios',
      measured: contended
        .map(([n, s]) => `${fixed(s.sluice.requests_per_op, 3)} (${code(n)})`)
        .join(', '),
      met: contended.every(([, s]) => s.sluice.requests_per_op <= 1.05),
    },
    {
      target: '0 RCU on acquire (every scenario, an LLM call, stored configuration cached)',
      measured: fixed(Math.max(...rcu), 3),
      met: rcu.every((x) => x === 0),
    },
    {
      target: '1 WCU per scope item on acquire (`single`, `spread`, stored configuration)',
      measured: `single ${fixed(wcuPerScope[0] ?? Number.NaN, 3)}; spread ${wcuPerScope
        .slice(1, -1)
        .map((x) => fixed(x, 3))
        .join(', ')}; stored ${fixed(wcuPerScope.at(-1) ?? Number.NaN, 3)}`,
      met: wcuPerScope.every((x) => x <= 1),
    },
    {
      target: 'at most 5 WCU for a whole LLM call (acquire and one adjust)',
      measured: `${r.llm_call.wcu}`,
      met: r.llm_call.wcu <= 5,
    },
    {
      target: "at least 1.5× the peer's decisions/s in `spread`, the minimum of three runs",
      measured: times(r.spread_runs.min_ratio),
      met: r.spread_runs.min_ratio >= 1.5,
    },
    {
      target: 'at least 1.5× the peer with its in-memory block in the contended scenarios',
      measured: blockRatios.map(([n, x]) => `${times(x)} (${code(n)})`).join(', '),
      met: blockRatios.every(([, x]) => x >= 1.5),
    },
    {
      target: 'at least 1.0× the peer in `single`',
      measured: times(single.sluice.ops_per_s / single.peer.ops_per_s),
      met: single.sluice.ops_per_s >= single.peer.ops_per_s,
    },
    {
      target: 'HTTP (through `@sluice/client`) within 1 ms of the engine',
      measured: `${fixed(httpAboveEngine, 3)} ms`,
      met: httpAboveEngine <= 1,
    },
    {
      target: `the acquire function's cold start at most ${c.target_ms} ms more than a bare handler's`,
      measured: `${fixed(c.difference_ms, 1)} ms`,
      met: c.target_met,
    },
  ];
}

function header(r: BenchResult): string {
  const run = r.run;
  const date = `${run.started.slice(0, 10)} ${run.started.slice(11, 16)} UTC`;
  const duration = `${Math.floor(run.duration_s / 60)} min ${run.duration_s % 60} s`;
  const versions = Object.entries(run.versions)
    .map(([name, version]) => `${code(name)} ${version}`)
    .join(', ');
  return [
    '# Benchmark',
    '',
    '<!-- Written by test/bench/markdown.ts from one run of the bench (`npm run bench:docs`): do not edit by hand. -->',
    '',
    "Sluice beside `rate-limiter-flexible`'s `RateLimiterDynamo` (the peer) on one DynamoDB Local,",
    "and the acquire function's cold start. Every figure below comes from one run:",
    '',
    table(
      ['run', ''],
      ['left', 'left'],
      [
        ['date', date],
        ['command', code(run.command)],
        ['duration', duration],
        [
          'Node',
          `${run.node} (the bench); ${r.cold_start.node} (the cold start: Lambda's runtime)`,
        ],
        ['machine', `${run.platform}, ${run.cpus} cores (${run.cpu_model}), ${run.memory_gb} GB`],
        [
          'load average',
          `${run.load_average.start} at the start, ${run.load_average.end} at the end (1 minute; other work on the machine shows here)`,
        ],
        ['versions', versions],
      ],
    ),
    '',
    '`npm run bench:docs` builds, runs the bench once and rewrites this file. Machines are noisy:',
    'treat absolute figures as noisy and ratios less so; to compare two commits, alternate their',
    'runs and compare the ratios.',
  ].join('\n');
}

function targetSection(r: BenchResult): string {
  return [
    '## Targets',
    '',
    table(
      ['target', 'this run', ''],
      ['left', 'left', 'left'],
      targets(r).map((t) => [t.target, t.measured, t.met ? 'met' : '**not met**']),
    ),
  ].join('\n');
}

function methodSection(r: BenchResult): string {
  const m = r.method;
  return [
    '## Method',
    '',
    `Both systems run on one DynamoDB Local, with the same limits and the same client concurrency.`,
    `Each is warmed up with ${int(m.warm_up_decisions_per_system)} decisions, and then measured A-B-B-A (Sluice, peer, peer,`,
    "Sluice; with the peer's in-memory block too, Sluice, peer, block, block, peer, Sluice) so that",
    "both share DynamoDB Local's JIT warm-up alike. In the contended scenarios, where a pass lasts",
    "a small fraction of a second, Sluice and the peer's in-memory block then run more rounds",
    `(Sluice, block, block, Sluice), and each is reported at its median round of ${m.contended_rounds} (the default`,
    'peer, far slower there, runs the first round only).',
    '',
    "The peer is `rate-limiter-flexible`'s `RateLimiterDynamo`, a fixed-window counter (a live key",
    'costs it two requests, and it admits up to twice the limit across a window boundary), in its',
    'default configuration and, in the contended scenarios, in its best one too:',
    '`inMemoryBlockOnConsumed`, which refuses a key that has used its points from memory until its',
    'window ends.',
    '',
    'One Sluice engine (a `Limiter`) serves all clients of a scenario, as one server process does.',
    'Sluice runs as built (`tsc -b`), as its packages ship it and as the peer runs from its',
    "package's JavaScript (Sluice's TypeScript sources through tsx would add the transform's helpers",
    'to every call).',
    '',
    'Every DynamoDB request either system sends goes through a counting middleware on its own client,',
    'which asks for `ReturnConsumedCapacity`. Capacity is counted as AWS bills it: single-item writes',
    'and reads at the units DynamoDB Local reports (it sizes items as AWS does); a write whose',
    'condition fails, 1 WCU; `TransactWriteItems`, 2 WCU per item.',
    '',
    "The scenarios' table has no stream, like the peer's, so the two tables are alike (in DynamoDB a",
    'stream costs a write nothing); the usage-history figures come from tables with streams.',
    '`contended_near_rate` is the worst case for branch guessing (demand right at the refill rate,',
    'so the TAT keeps crossing `now`); it is there to keep that cost visible.',
  ].join('\n');
}

function throughputSection(r: BenchResult): string {
  const rows: string[][] = [];
  const spreads = ['spread', 'spread_2', 'spread_3'];
  const label = (name: string) =>
    spreads.includes(name) ? `spread (run ${spreads.indexOf(name) + 1} of 3)` : name;
  for (const [name, s] of Object.entries(r.scenarios)) {
    const systems = [
      ['sluice', s.sluice],
      ['peer', s.peer],
      ...(s.peer_in_memory_block
        ? [['peer, in-memory block', s.peer_in_memory_block] as const]
        : []),
    ] as const;
    for (const [system, x] of systems) {
      rows.push([
        label(name),
        system,
        int(x.ops_per_s),
        fixed(x.requests_per_op, 3),
        fixed(x.wcu_per_op, 3),
        fixed(x.rcu_per_op, 3),
        `${x.allowed}/${x.denied}`,
        system === 'sluice' ? '' : times(s.sluice.ops_per_s / x.ops_per_s),
      ]);
    }
  }
  const about = Object.entries(r.scenarios)
    .filter(([name]) => name !== 'spread_2' && name !== 'spread_3')
    .map(([name, s]) => `- ${code(name)}: ${s.about}.`);
  const passes = Object.entries(r.scenarios).map(([name, s]) => [
    label(name),
    s.passes.map((p) => `${SYSTEM[p.system]} ${int(p.ops_per_s)}`).join(', '),
  ]);
  const ratios = r.spread_runs.ratios.map(times).join(', ');
  return [
    '## Throughput beside the peer',
    '',
    ...about,
    '',
    'Decisions per second, and DynamoDB requests and capacity per decision; each figure is the mean',
    "of a system's two passes (in the contended scenarios, Sluice's and the in-memory block's",
    'median round):',
    '',
    table(
      [
        'scenario',
        'system',
        'decisions/s',
        'requests/decision',
        'WCU/decision',
        'RCU/decision',
        'allowed/denied',
        'Sluice ÷ it, decisions/s',
      ],
      ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right'],
      rows,
    ),
    '',
    `\`spread\`, three runs: ${ratios}; **minimum ${times(r.spread_runs.min_ratio)}**.`,
    '',
    'Each pass in the order it ran, in decisions/s (in the contended scenarios, the first round;',
    'block: the peer with its in-memory block):',
    '',
    table(['scenario', 'passes in order'], ['left', 'left'], passes),
  ].join('\n');
}

function contendedSection(r: BenchResult): string {
  const parts: string[] = [];
  for (const name of ['contended', 'contended_near_rate']) {
    const s = scenarioOf(r, name);
    if (!s.rounds) continue;
    const { sluice, peer_in_memory_block: block } = s.rounds;
    const passMs = (opsPerS: number) => (s.decisions_per_pass / opsPerS) * 1_000;
    // Each figure is the mean of two passes; its counts are their sums.
    const requests = (x: Scenario['sluice'] | undefined) => int((x?.requests ?? Number.NaN) / 2);
    parts.push(
      `\`${name}\`: ${s.clients} clients on one key, ${int(s.decisions_per_pass)} decisions a pass. At the median round a pass lasts`,
      `${fixed(passMs(s.sluice.ops_per_s), 0)} ms for Sluice and ${fixed(passMs(s.peer_in_memory_block?.ops_per_s ?? Number.NaN), 0)} ms for the peer's block, and sends ${requests(s.sluice)} DynamoDB requests`,
      `for Sluice, ${requests(s.peer_in_memory_block)} for the block and ${requests(s.peer)} for the default peer.`,
      '',
      table(
        ['round', 'Sluice, decisions/s', "peer's in-memory block, decisions/s", 'Sluice ÷ block'],
        ['right', 'right', 'right', 'right'],
        sluice.map((x, i) => [
          `${i + 1}`,
          int(x),
          int(block[i] ?? Number.NaN),
          times(x / (block[i] ?? Number.NaN)),
        ]),
      ),
      '',
    );
  }
  return [
    '## Contended keys',
    '',
    `The contended scenarios' rounds (the first round comes straight after the warm-up, which refuses`,
    `nothing); each system is reported at its median round of ${r.method.contended_rounds}.`,
    '',
    ...parts,
    'A refusal decided from memory draws no lease id and skips unchanged definitions. Concurrent',
    'calls on one item share one write (see [Concurrent calls, one write](design.md#concurrent-calls-one-write)): the',
    'clients on one new key send a few writes for their first burst, not one each, which DynamoDB',
    'Local would serve one after another. The peer pays its burst write by write, then',
    'answers from memory for the rest of its fixed window. Sluice answers from memory while the',
    'state it saw proves a refusal, and writes again at every refill, combining the calls that meet',
    "there: the price of GCRA's smooth refill and truthful `Retry-After`, one write per refill",
    'rather than one per caller. Combining serves a process with many concurrent callers (the',
    'engine embedded in a server, `npm start`); a Lambda container serves one request at a time,',
    "and the contention between containers is settled by DynamoDB's conditions.",
  ].join('\n');
}

function singleSection(r: BenchResult): string {
  const p = r.single_profile;
  const row = (name: string, x: typeof p.sluice) => [
    name,
    int(x.us_per_decision),
    int(x.us_dynamodb_local_and_http),
    int(x.us_aws_sdk),
    int(x.us_outside_the_sdk),
    `${x.request_bytes} / ${x.response_bytes}`,
  ];
  const alone = p.sluice_request_alone;
  const ceiling = p.ceiling_with_sluices_request;
  const gap = alone.us_per_decision - p.peer.us_per_decision;
  const single = scenarioOf(r, 'single');
  const singleRatio = single.sluice.ops_per_s / single.peer.ops_per_s;
  const ceilingText =
    ceiling < 1
      ? "That is `single`'s ceiling with this request: were the engine's own work free, Sluice would still be below the peer, so no saving in the engine can bring `single` to 1.0×; only a request as cheap as the peer's could."
      : "That is `single`'s ceiling with this request: the engine's own work takes Sluice from there down to its `single` ratio.";
  const keyed = p.peer_request_us;
  return [
    "## Where `single`'s time goes",
    '',
    `Each system alone, ${int(r.method.profile_decisions)} decisions on fresh keys, twice (in the order Sluice, Sluice's request`,
    'alone, peer, peer, request alone, Sluice), timed around the AWS SDK call and around its HTTP',
    'exchange. "Sluice\'s request alone" is the very write the',
    "engine sends for a fresh key, sent through Sluice's store with none of the engine's work",
    'around it: no plan, no lease, no statuses.',
    '',
    table(
      [
        'system',
        'µs per decision',
        'DynamoDB Local and HTTP',
        'AWS SDK',
        'outside the SDK',
        'bytes sent / received',
      ],
      ['left', 'right', 'right', 'right', 'right', 'right'],
      [row('sluice', p.sluice), row("Sluice's request alone", alone), row('peer', p.peer)],
    ),
    '',
    `Sluice's request alone reaches ${times(ceiling)} of the peer's whole decision`,
    `(\`ceiling_with_sluices_request\`; \`single\` itself: ${times(singleRatio)}).`,
    ceilingText,
    `The request costs ${int(Math.abs(gap))} µs ${gap >= 0 ? 'more' : 'less'} than the peer's whole decision: ${signed(alone.us_dynamodb_local_and_http - p.peer.us_dynamodb_local_and_http)} µs in`,
    `DynamoDB Local and HTTP, ${signed(alone.us_aws_sdk - p.peer.us_aws_sdk)} in the SDK (${alone.request_bytes} bytes sent against ${p.peer.request_bytes}) and ${signed(alone.us_outside_the_sdk - p.peer.us_outside_the_sdk)} around it.`,
    "What it carries beyond the peer's is what keeps Sluice exact:",
    '',
    "- the limit's definition, so that a limit changed underneath is converted exactly rather than",
    '  misread;',
    '- a TTL that only grows, so that a short-lived limit never shortens an item that still holds a',
    '  debt or a daily window;',
    "- the unsharded guard, so that no write lands at the whole scope's share on a scope split into",
    '  shards;',
    '- state in exact integers (nanosecond-grained times), and the item back, whose generation keeps',
    '  a refund to the period it was charged in.',
    '',
    `The table's key: the peer's own request takes ${int(keyed.on_its_table)} µs on its table (a partition key) and`,
    `${int(keyed.on_a_table_keyed_as_sluices)} µs on a table keyed as Sluice's (partition and sort key), in the same run.`,
    '',
    `The engine alone (\`engine_cpu_us\`: a store that answers at once, fresh keys, measured before`,
    `DynamoDB Local starts) takes ${r.engine_cpu_us.memory_with_room} µs an acquire while its memory has room and`,
    `${r.engine_cpu_us.memory_full} µs once it is full; beside the AWS SDK the same code runs colder (more garbage,`,
    'fewer cache hits).',
  ].join('\n');
}

function sharedSection(r: BenchResult): string {
  const { unsharded, sharded } = r.shared;
  const limit = r.method.shared_limit;
  const row = (name: string, x: typeof unsharded) => [
    name,
    int(x.ops_per_s),
    fixed(x.requests_per_op, 3),
    fixed(x.wcu_per_op, 3),
    percent(x.hottest_item_share_of_writes),
    `${x.allowed} / ${x.allowed_at_most}`,
    `${x.over_admitted}`,
  ];
  return [
    '## A shared limit',
    '',
    `Sluice only (the peer has no multi-scope decision): ${unsharded.clients} clients over ${int(unsharded.entities)} entities, each`,
    `call also taking from one resource-wide limit of ${limit.per_second} requests/second (burst ${limit.burst}),`,
    `unsharded and in ${sharded.shards} shards. Admissions are checked against the limit itself: at most the burst`,
    'plus the rate times the elapsed time.',
    '',
    table(
      [
        'resource limit',
        'decisions/s',
        'requests/decision',
        'WCU/decision',
        "hottest item's share of writes",
        'admitted / at most allowed',
        'over-admitted',
      ],
      ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
      [row('unsharded', unsharded), row(`${sharded.shards} shards`, sharded)],
    ),
    '',
    sharded.hottest_item_share_of_writes < unsharded.hottest_item_share_of_writes
      ? `Sharding moves the hottest item from ${percent(unsharded.hottest_item_share_of_writes)} of all writes to ${percent(sharded.hottest_item_share_of_writes)}.`
      : `In this run sharding did not lower the hottest item's share of writes (${percent(unsharded.hottest_item_share_of_writes)} unsharded, ${percent(sharded.hottest_item_share_of_writes)} in ${sharded.shards} shards).`,
    `A decision sent ${fixed(unsharded.requests_per_op, 3)} requests unsharded and ${fixed(sharded.requests_per_op, 3)} sharded, one of them for the`,
    "entity's own item. Unsharded, the calls of the process that meet on the shared item combine",
    "their writes (see [Concurrent calls, one write](design.md#concurrent-calls-one-write)); a shard's writes are not",
    "combined: each carries the shard's write counter, which decides when the scope grows. On",
    'DynamoDB Local, one process behind one lock, sharding buys no throughput; in DynamoDB it is',
    'what lets a shared limit use more than one partition (see [Capacity](../README.md#capacity)).',
  ].join('\n');
}

function costSection(r: BenchResult): string {
  const u = r.usage_aggregator;
  const w = r.whole_call_wcu;
  const s = r.stored_config;
  const reads = s.no_cache.requests - s.warm_cache.requests;
  const perScope = s.warm_cache.requests === s.warm_cache.scopes;
  return [
    '## One LLM call, usage history and stored configuration',
    '',
    `One whole LLM call (acquire with three limits, then one exactly-once adjust), ${r.method.llm_calls} calls, per`,
    "call; with usage history the usage event and the lease's context ride in the same writes:",
    '',
    table(
      ['usage history', 'requests', 'WCU', 'RCU'],
      ['left', 'right', 'right', 'right'],
      [
        ['on', `${r.llm_call.requests}`, `${r.llm_call.wcu}`, `${r.llm_call.rcu}`],
        [
          'off',
          `${r.llm_call_without_history.requests}`,
          `${r.llm_call_without_history.wcu}`,
          `${r.llm_call_without_history.rcu}`,
        ],
      ],
    ),
    '',
    `The bucket item is ${r.item_bytes.bucket} bytes (a WCU buys 1 KB).`,
    '',
    'The usage aggregator, off the hot path, reads the stream of a table that saw only such calls',
    "in batches of 100 records (the event source mapping's batch size), per settled lease:",
    '',
    table(
      ['case', 'stream records', 'WCU', 'RCU', 'requests'],
      ['left', 'right', 'right', 'right', 'right'],
      [
        ['one key (under one org) makes every call', u.one_key],
        ['every call a different key under one org', u.distinct_keys],
        [
          "besides, each call's acquire and settlement in different batches (long calls)",
          u.distinct_keys_long_calls,
        ],
      ].map(([name, x]) => {
        const c = x as typeof u.one_key;
        return [
          name as string,
          `${c.records}`,
          fixed(c.wcu_per_settled_lease, 2),
          fixed(c.rcu_per_settled_lease, 2),
          fixed(c.requests_per_settled_lease, 2),
        ];
      }),
    ),
    '',
    'Each row a batch touches is written once, with everything the batch adds to it (the hour rows',
    "of the key, its org and the roll-up, the day's and month's boards), plus the batch's log of",
    'usage events counted: a lease whose records share a batch with many others costs a fraction of',
    'a write; one whose acquire and settlement fall in different batches pays for its rows twice.',
    '',
    `One LLM call of the capacity model's default mix, measured whole (\`whole_call_wcu\`): a key of`,
    'its own (every call a different one) and its org, both with limits, and a provider-wide limit on',
    "the model; acquire, one adjust while it streams, a release with the provider's final count; then",
    "the usage aggregator over that table's stream in batches of 100 records. Per call:",
    '',
    table(
      ['part', 'WCU'],
      ['left', 'right'],
      [
        [`acquire (${w.scopes} scopes, one write each)`, fixed(w.acquire, 2)],
        [
          'adjust (one transaction: the lease item and each scope item it moves)',
          fixed(w.adjust, 2),
        ],
        ['release (the same)', fixed(w.release, 2)],
        ['usage history (the aggregator)', fixed(w.usage_history, 2)],
        ['**the whole call**', `**${fixed(w.total, 2)}**`],
      ],
    ),
    '',
    'Stored configuration (`stored_config`): a key on a plan with shared and per-model limits, under',
    'a project and an org, calling a model with a provider-wide limit and a price, resolved as the',
    `acquire handler resolves it: ${s.warm_cache.scopes} scope items.`,
    '',
    table(
      ['configuration cache', 'requests', 'WCU', 'RCU'],
      ['left', 'right', 'right', 'right'],
      [
        ['warm', `${s.warm_cache.requests}`, `${s.warm_cache.wcu}`, `${s.warm_cache.rcu}`],
        ['none', `${s.no_cache.requests}`, `${s.no_cache.wcu}`, `${s.no_cache.rcu}`],
      ],
    ),
    '',
    `${perScope ? 'With a warm cache, one request per scope item; w' : 'W'}ithout a cache, ${fixed(reads, 0)} configuration reads more.`,
  ].join('\n');
}

function usageReadsSection(r: BenchResult): string {
  const u = r.usage_reads;
  const { entities_1000: few, entities_100000: many } = u.top;
  const written = (g: typeof few.generated) =>
    `${fixed(g.seconds, 1)} s at ${int(g.rows_per_s)} rows/s`;
  const { month_of_days: month, year_of_months: year } = u.history;
  return [
    '## Reading usage history',
    '',
    'What the read routes cost, on rows written straight into a table of their own as the usage',
    'aggregator lays them out (its own functions make them; `BatchWriteItem`, 25 rows a request,',
    `${u.method.parallel_batch_writes} requests at once). Per read: requests, items read (the queries' \`ScannedCount\`) and RCU as`,
    "DynamoDB Local reports them (`ReturnConsumedCapacity`; the store's queries are strongly",
    `consistent), the mean of ${u.method.timed_runs} runs after an untimed one; the time is their median.`,
    '',
    `The top ${u.method.top_limit} entities of one day by cost (\`topEntities\`, what \`GET /v1/admin/usage/top\` calls), its`,
    'boards made from every entity at once:',
    '',
    table(
      [
        'entities in the day',
        'requests',
        'items read',
        'RCU',
        'median ms',
        'exact',
        "the day's boards written in",
      ],
      ['right', 'right', 'right', 'right', 'right', 'left', 'right'],
      [few, many].map((t) => [
        int(t.entities),
        grouped(t.requests),
        grouped(t.items_read),
        grouped(t.rcu),
        millis(t.median_ms),
        t.exact ? 'yes' : 'no',
        written(t.generated),
      ]),
    ),
    '',
    `An answer of ${u.method.top_limit} reads the day's boards (and the partitions of rows from before boards): at`,
    `${int(many.entities)} entities ${int(many.items_read)} items and ${grouped(many.rcu)} RCU, as at ${int(few.entities)} (${int(few.items_read)} items, ${grouped(few.rcu)} RCU).`,
    '',
    `One entity's history of ${u.method.history_resources} resource (\`usageHistory\`, what \`GET /v1/usage\` calls), its hour rows`,
    `present for every hour of the range and of the month before it (${int(u.history.generated.rows)} rows, written in`,
    `${written(u.history.generated)}):`,
    '',
    table(
      ['query', 'periods', 'requests', 'items read', 'RCU', 'median ms'],
      ['left', 'right', 'right', 'right', 'right', 'right'],
      (
        [
          ['a month of days', month],
          ['a year of months', year],
        ] as const
      ).map(([name, x]) => [
        name,
        `${x.periods}`,
        grouped(x.requests),
        grouped(x.items_read),
        grouped(x.rcu),
        millis(x.median_ms),
      ]),
    ),
  ].join('\n');
}

function underLoadSection(r: BenchResult): string {
  const u = r.under_load;
  const row = (name: string, x: typeof u.http) => [
    name,
    int(x.calls_per_s),
    millis(x.p50_ms_acquire),
    millis(x.p99_ms_acquire),
    millis(x.p50_ms_call),
  ];
  return [
    '## Under load, with the usage aggregator running',
    '',
    `${u.clients} clients each make LLM calls (an acquire, then a release with the usage) for ${fixed(u.turn_ms / 1_000, 0)} s, in turns: through`,
    "`npm start`'s local HTTP API (a process of its own, whose stream reader counts every call into usage",
    'history as it comes), then with the engine in this process, twice each after one warm-up turn',
    'of each; both on one table of the same DynamoDB Local.',
    '',
    table(
      ['path', 'calls/s', 'p50 ms acquire', 'p99 ms acquire', 'p50 ms call'],
      ['left', 'right', 'right', 'right', 'right'],
      [row('local HTTP API (`@sluice/client`)', u.http), row('engine in-process', u.engine)],
    ),
    '',
    `The HTTP path's median acquire is ${fixed(u.ratio_p50_acquire, 2)}× the engine's (target at most 2×); a whole call's, ${fixed(u.ratio_p50_call, 2)}×.`,
  ].join('\n');
}

function latencySection(r: BenchResult): string {
  const l = r.local_api;
  const m = r.method;
  const engine = l.median_ms_engine_acquire;
  const above = (x: number) => fixed(x - engine, 3);
  return [
    '## Latency of one decision',
    '',
    `Medians (\`local_api\`): every way in turn, ${m.latency_calls_per_round} calls each, for ${m.latency_rounds} rounds; the first round warms`,
    'them up and is not counted. Every timed call is an admission. The local API is the Lambda',
    'handlers behind a local HTTP server; 50 entities take turns, so their (absent) configuration',
    'is cached, as for a key that calls again within the cache time.',
    '',
    table(
      ['path', 'median ms', 'above the engine'],
      ['left', 'right', 'right'],
      [
        ['the local HTTP API through `@sluice/client`', l.median_ms_http_acquire, true],
        ['the same through the global `fetch`', l.median_ms_http_acquire_fetch, true],
        [
          'the same through `node:http` (keep-alive, what the AWS SDK uses)',
          l.median_ms_http_acquire_node_http,
          true,
        ],
        [
          'the acquire handler called as Lambda calls it, no HTTP',
          l.median_ms_handler_acquire,
          true,
        ],
        ['the engine directly', engine, false],
        ['a bare DynamoDB Local `UpdateItem`', l.median_ms_dynamodb_update, false],
      ].map(([path, x, relative]) => [
        path as string,
        fixed(x as number, 3),
        relative ? above(x as number) : '',
      ]),
    ),
    '',
    `An entity whose configuration is not cached (${m.latency_new_entity_calls} calls, each a new entity): ${fixed(l.median_ms_http_acquire_new_entity, 3)} ms`,
    `through \`@sluice/client\`. Of the SDK's ${above(l.median_ms_http_acquire)} ms above the engine, the handler (validation,`,
    `policy, headers) takes ${above(l.median_ms_handler_acquire)} ms, the local server and an HTTP exchange`,
    `${fixed(l.median_ms_http_acquire_node_http - l.median_ms_handler_acquire, 3)} ms, and the SDK's own work (building the request, reading the answer)`,
    `${fixed(l.median_ms_http_acquire - l.median_ms_http_acquire_node_http, 3)} ms.`,
  ].join('\n');
}

/** The in-process client beside the HTTP one (none in runs from before it was measured). */
function inProcessSection(r: BenchResult): string | undefined {
  const p = (r as Partial<BenchResult>).in_process;
  if (!p) return undefined;
  const row = (way: string, f: typeof p.http) => [
    way,
    fixed(f.p50_ms, 2),
    fixed(f.p99_ms, 2),
    int(f.decisions_per_s),
    fixed(f.dynamodb_requests_per_call, 2),
  ];
  return [
    '## In process beside the HTTP API',
    '',
    `One call (an acquire, then a release) through \`@sluice/client\` to the local HTTP API and through`,
    `\`@sluice/client/in-process\`, on one table: latency one call at a time (${p.calls_per_round} calls each way, in turn, for`,
    `${p.rounds} rounds; the first warms up and is not counted), calls per second with ${p.in_flight} in flight through one`,
    `client (${int(p.throughput_calls)} calls), and the DynamoDB requests each call sent, counted on each way's own DynamoDB client.`,
    'The local HTTP API has no API Gateway and no Lambda invocation in front of it: in AWS the HTTP',
    "path adds theirs, which the in-process path does not have; DynamoDB's work is the same.",
    '',
    table(
      ['path', 'p50 ms', 'p99 ms', 'calls/s', 'DynamoDB requests/call'],
      ['left', 'right', 'right', 'right', 'right'],
      [
        row('the local HTTP API through `@sluice/client`', p.http),
        row('in process, `@sluice/client/in-process`', p.in_process),
      ],
    ),
  ].join('\n');
}

function coldStartSection(r: BenchResult): string {
  const c = r.cold_start;
  // The samples' range without the fastest and the slowest.
  const spreadOf = (xs: readonly number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return (sorted.at(-2) ?? Number.NaN) - (sorted[1] ?? Number.NaN);
  };
  const spread = { acquire: spreadOf(c.acquire_ms), bare: spreadOf(c.bare_ms) };
  const noisy = Math.max(spread.acquire, spread.bare) > Math.abs(c.difference_ms);
  const more = (part: 'import' | 'first_call') => {
    const x = c.median_ms_parts.acquire[part] - c.median_ms_parts.bare[part];
    return `${fixed(Math.abs(x), 1)} ms ${x >= 0 ? 'more' : 'less'}`;
  };
  return [
    '## Cold start',
    '',
    `What users feel is the acquire function's cold start. Each run is a fresh Node ${c.node} process`,
    `(Lambda's runtime) that imports a handler module as Lambda's runtime does (\`import()\`, then`,
    '`handler(event, context)`) and answers a first acquire on the same DynamoDB Local, timed from',
    "the spawn to the answer: the acquire function's bundle as the construct ships it",
    `(\`lib/handlers/acquire/index.mjs\`, ${fixed(c.acquire_bundle_bytes / 1024, 1)} KB; an entity's first call, inline limits), and a bare`,
    'handler that only sends one `UpdateItem` with the AWS SDK (its client created at load). Each',
    'module sits outside the repository beside a `node_modules` holding only the AWS SDK, as in',
    'Lambda, and both run with the environment the construct gives the acquire function',
    `(\`NODE_OPTIONS=--enable-source-maps\`, INFO logs). After one untimed start of each, ${c.runs} of each`,
    "alternate (acquire, bare, bare, acquire, …), so that both share the machine's noise.",
    '',
    table(
      ['run', 'acquire, ms', 'bare, ms'],
      ['right', 'right', 'right'],
      c.acquire_ms.map((x, i) => [`${i + 1}`, fixed(x, 1), fixed(c.bare_ms[i] ?? Number.NaN, 1)]),
    ),
    '',
    `Medians: **${fixed(c.median_ms_acquire, 1)} ms** for acquire, **${fixed(c.median_ms_bare, 1)} ms** for the bare handler:`,
    `**${fixed(c.difference_ms, 1)} ms more** against a target of at most ${c.target_ms} ms more, ${c.target_met ? 'met' : '**not met**'}.`,
    ...(noisy
      ? [
          `Without their fastest and slowest, the samples span more than that difference`,
          `(${fixed(spread.acquire, 1)} ms for acquire, ${fixed(spread.bare, 1)} ms for the bare handler): in this run the verdict is within the noise.`,
        ]
      : []),
    '',
    'Where it goes (medians; each process timed its `import()` and its first call itself):',
    '',
    table(
      [
        'handler',
        '`import()`, ms',
        'first call, ms',
        "the rest (Node's start, the answer's way back), ms",
      ],
      ['left', 'right', 'right', 'right'],
      (['acquire', 'bare'] as const).map((h) => [
        h,
        fixed(c.median_ms_parts[h].import, 1),
        fixed(c.median_ms_parts[h].first_call, 1),
        fixed(c.median_ms_parts[h].rest, 1),
      ]),
    ),
    '',
    `Against the bare handler's, acquire's \`import()\` takes ${more('import')} and its first call ${more('first_call')}.`,
  ].join('\n');
}

const DATA_START = '```json bench';
const DATA_END = '```';

/** JSON as the repository's formatter writes it: Biome checks JSON blocks in Markdown too. */
function formatted(value: unknown): string {
  const biome = fileURLToPath(new URL('../../node_modules/.bin/biome', import.meta.url));
  const run = spawnSync(biome, ['format', '--stdin-file-path=run.json'], {
    input: JSON.stringify(value, null, 2),
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`biome format: ${run.stderr}`);
  return run.stdout.trimEnd();
}

/** The run's figures as `--json` prints them, kept in the document they were rendered into. */
function dataSection(r: BenchResult): string {
  return [
    '## The run, as data',
    '',
    "Everything above comes from this run's `--json` document, kept here; after a change to the",
    'rendering alone, `npx tsx test/bench/markdown.ts docs/benchmark.md` renders it again.',
    '',
    "<details><summary>The run's JSON</summary>",
    '',
    DATA_START,
    formatted(r),
    DATA_END,
    '',
    '</details>',
  ].join('\n');
}

/** The whole document. */
export function benchmarkMarkdown(r: BenchResult): string {
  return `${[
    header(r),
    targetSection(r),
    methodSection(r),
    throughputSection(r),
    contendedSection(r),
    singleSection(r),
    sharedSection(r),
    costSection(r),
    usageReadsSection(r),
    latencySection(r),
    inProcessSection(r),
    underLoadSection(r),
    coldStartSection(r),
    dataSection(r),
  ]
    .filter((section) => section !== undefined)
    .join('\n\n')}\n`;
}

/** The run a document was rendered from (its data section), or a `--json` document itself. */
export function runOf(text: string): BenchResult {
  const from = text.indexOf(`${DATA_START}\n`);
  if (from < 0) return JSON.parse(text) as BenchResult;
  const start = from + DATA_START.length + 1;
  return JSON.parse(text.slice(start, text.indexOf(`\n${DATA_END}`, start))) as BenchResult;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    throw new Error(
      'usage: npx tsx test/bench/markdown.ts <docs/benchmark.md, or a saved `npm run -s bench -- --json`>',
    );
  }
  process.stdout.write(benchmarkMarkdown(runOf(readFileSync(file, 'utf8'))));
}
