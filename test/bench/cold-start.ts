/**
 * The acquire function's cold start, as users feel it: a fresh Node 22 process (Lambda's
 * runtime) that imports the built bundle (`lib/handlers/acquire/index.mjs`), as Lambda's runtime
 * does — `import()`, then `handler(event, context)` — and answers a first acquire on DynamoDB
 * Local, timed from the process's spawn to its answer. Beside it, the same for a bare handler
 * that only sends one UpdateItem with the AWS SDK: the difference is what Sluice adds.
 *
 * Each handler sits outside the repository, beside a `node_modules` holding only what Lambda's
 * runtime provides (`@aws-sdk/*`), as the infra tier runs the bundle; both run with the
 * environment the construct gives the acquire function. Node 22 is the infra tier's
 * (`test/support/node22.ts`: the one `npm install` brings on linux-x64, or SLUICE_NODE22).
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV, POWERTOOLS_ENV } from '@sluice/lambdas/environment';
import { METRICS } from '@sluice/lambdas/metric-names';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '@sluice/local';
import { iamEvent } from '../support/events.js';
import { node22 } from '../support/node22.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BUNDLE_DIR = join(ROOT, 'lib/handlers/acquire');

/** Cold starts of each handler, alternated; the figures are their medians. */
export const COLD_START_RUNS = 7;
/** The acquire function's cold start may take at most this much more than the bare one's. */
export const COLD_START_TARGET_MS = 30;

/**
 * The acquire bundle, and the newest source it is built from when that is newer than the
 * bundle (then the bench would time old code: `npm run build` first).
 */
export function acquireBundle(): { path: string; bytes: number; olderThan?: string } {
  const path = join(BUNDLE_DIR, 'index.mjs');
  if (!existsSync(path)) throw new Error(`no ${path}: run \`npm run build\` first`);
  const built = statSync(path).mtimeMs;
  const newer = ['lambdas/src', 'packages/core/src']
    .flatMap((dir) =>
      readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)),
    )
    .find((file) => statSync(join(ROOT, file)).mtimeMs > built);
  return { path, bytes: statSync(path).size, ...(newer ? { olderThan: newer } : {}) };
}

/** What Lambda's runtime does with a handler module, timed from inside the process. */
const RUNNER = `import { pathToFileURL } from 'node:url';
const started = performance.now(); // since this process began
const [dir, event] = process.argv.slice(2);
const { handler } = await import(pathToFileURL(dir + '/index.mjs').href);
const imported = performance.now();
const context = { awsRequestId: 'cold-start', functionName: 'acquire', getRemainingTimeInMillis: () => 10000 };
const result = await handler(JSON.parse(event), context);
const answered = performance.now();
const answer = { node: process.version, statusCode: result.statusCode, body: result.body, importMs: imported - started, callMs: answered - imported };
process.stdout.write('ANSWER ' + JSON.stringify(answer) + '\\n', () => process.exit(0));
`;

/** The baseline: a handler that only sends one UpdateItem, its client created once, at load. */
const BARE_HANDLER = `import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
const endpoint = process.env.${ENV.dynamodbEndpoint};
const client = new DynamoDBClient(endpoint ? { endpoint } : {});
export const handler = async (event) => {
  const { entity } = JSON.parse(event.body);
  await client.send(new UpdateItemCommand({
    TableName: process.env.${ENV.tableName},
    Key: { pk: { S: 'cold-start#' + entity }, sk: { S: 'bare' } },
    UpdateExpression: 'SET n = :one',
    ExpressionAttributeValues: { ':one': { N: '1' } },
  }));
  return { statusCode: 200, body: '{}' };
};
`;

/** One cold start: all from the parent's clock, but for the parts the process timed itself. */
interface ColdStartSample {
  /** From spawn to the answer's arrival. */
  readonly ms: number;
  /** `import()` of the handler module (loading, compiling and running its top level). */
  readonly importMs: number;
  /** The first call, DynamoDB requests included. */
  readonly callMs: number;
}

/** What `npm run bench` reports of the cold start (`cold_start` in its JSON). */
export interface ColdStartResult {
  readonly node: string;
  readonly runs: number;
  readonly acquire_bundle_bytes: number;
  /** Milliseconds from spawn to the answer, in the order they ran. */
  readonly acquire_ms: number[];
  readonly bare_ms: number[];
  readonly median_ms_acquire: number;
  readonly median_ms_bare: number;
  /** The medians' difference: what the acquire function adds to a bare one's cold start. */
  readonly difference_ms: number;
  readonly target_ms: number;
  readonly target_met: boolean;
  /**
   * Medians of the parts each process timed itself, and of the rest of each run (the process's
   * start, Node's bootstrap, the answer's way back through the pipe).
   */
  readonly median_ms_parts: Record<
    'acquire' | 'bare',
    { import: number; first_call: number; rest: number }
  >;
}

const median = (xs: readonly number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
};
const ms = (x: number) => Number(x.toFixed(1));

/**
 * {@link COLD_START_RUNS} cold starts of the acquire bundle and as many of the bare handler,
 * alternated (acquire, bare, bare, acquire, …) so that both share the machine's noise, after
 * one untimed start of each (which brings the files into the page cache, and writes the lease
 * signing key if the table has none yet: a deployment's table holds it after its first
 * acquire). Each timed acquire is an entity's first, with inline limits.
 */
export async function coldStart(options: {
  readonly endpoint: string;
  readonly tableName: string;
}): Promise<ColdStartResult> {
  const node = node22();
  const bundle = acquireBundle();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cold-start-'));
  try {
    mkdirSync(join(dir, 'acquire'));
    copyFileSync(bundle.path, join(dir, 'acquire/index.mjs'));
    copyFileSync(`${bundle.path}.map`, join(dir, 'acquire/index.mjs.map'));
    mkdirSync(join(dir, 'bare'));
    writeFileSync(join(dir, 'bare/index.mjs'), BARE_HANDLER);
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'node_modules/@aws-sdk'), join(dir, 'node_modules/@aws-sdk'));
    writeFileSync(join(dir, 'invoke.mjs'), RUNNER);
    const env = {
      PATH: process.env.PATH ?? '',
      [ENV.tableName]: options.tableName,
      [ENV.dynamodbEndpoint]: options.endpoint,
      [ENV.service]: 'sluice',
      [POWERTOOLS_ENV.service]: 'sluice',
      [POWERTOOLS_ENV.logLevel]: 'INFO', // the construct's, for acquire: its decision lines
      [POWERTOOLS_ENV.namespace]: METRICS.namespace,
      NODE_OPTIONS: '--enable-source-maps',
      AWS_LAMBDA_FUNCTION_NAME: 'acquire', // as Lambda sets it
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    };
    let seq = 0;
    const once = (handler: 'acquire' | 'bare') => {
      const entity = `cold-${process.pid}-${seq++}`;
      const event = iamEvent({
        method: 'POST',
        path: '/v1/acquire',
        body: {
          entity,
          resource: 'cold-model',
          usage: {},
          limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
        },
      });
      return run(node, [join(dir, 'invoke.mjs'), join(dir, handler), JSON.stringify(event)], env);
    };
    let version = '';
    const check = (handler: string, answer: Answer) => {
      if (answer.statusCode !== 200) {
        throw new Error(`cold start of ${handler}: ${answer.statusCode} ${answer.body}`);
      }
      version = answer.node;
    };
    check('acquire', (await once('acquire')).answer);
    check('bare', (await once('bare')).answer);
    const samples = { acquire: [] as ColdStartSample[], bare: [] as ColdStartSample[] };
    for (let i = 0; i < COLD_START_RUNS; i++) {
      const order = i % 2 === 0 ? (['acquire', 'bare'] as const) : (['bare', 'acquire'] as const);
      for (const handler of order) {
        const { answer, elapsedMs } = await once(handler);
        check(handler, answer);
        samples[handler].push({ ms: elapsedMs, importMs: answer.importMs, callMs: answer.callMs });
      }
    }
    const totals = (h: 'acquire' | 'bare') => samples[h].map((s) => ms(s.ms));
    const acquire = median(totals('acquire'));
    const bare = median(totals('bare'));
    const parts = (h: 'acquire' | 'bare') => ({
      import: ms(median(samples[h].map((s) => s.importMs))),
      first_call: ms(median(samples[h].map((s) => s.callMs))),
      rest: ms(median(samples[h].map((s) => s.ms - s.importMs - s.callMs))),
    });
    return {
      node: version,
      runs: COLD_START_RUNS,
      acquire_bundle_bytes: bundle.bytes,
      acquire_ms: totals('acquire'),
      bare_ms: totals('bare'),
      median_ms_acquire: acquire,
      median_ms_bare: bare,
      difference_ms: ms(acquire - bare),
      target_ms: COLD_START_TARGET_MS,
      target_met: acquire - bare <= COLD_START_TARGET_MS,
      median_ms_parts: { acquire: parts('acquire'), bare: parts('bare') },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Answer {
  node: string;
  statusCode: number;
  body: string;
  importMs: number;
  callMs: number;
}

/** Spawns `node args`, and times it from the spawn to the `ANSWER` line on its stdout. */
function run(
  node: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ answer: Answer; elapsedMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(node, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let answered: { answer: Answer; elapsedMs: number } | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cold start: no answer in 30 s\n${stdout}${stderr}`));
    }, 30_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const elapsedMs = performance.now() - t0;
      stdout += chunk;
      const line = /^ANSWER (.*)\n/m.exec(stdout)?.[1];
      if (line && !answered) answered = { answer: JSON.parse(line) as Answer, elapsedMs };
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (answered && code === 0) resolve(answered);
      else reject(new Error(`cold start: ${node} exited with ${code}\n${stdout}${stderr}`));
    });
  });
}
