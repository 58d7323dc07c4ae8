/**
 * `npm run test:consumer`: Sluice's packages as a user gets them. Builds and packs every package
 * (`npm pack`), installs the tarballs with plain npm into a new project outside the repo, and
 * from there:
 *  1. plain `node` imports @sluice/client and @sluice/core (ESM) and calls them;
 *  2. `tsc --noEmit` checks consumer files (strict, no skipLibCheck) using the SDK's types and
 *     @sluice/core's public ones (the engine embedded);
 *  3. esbuild bundles a consumer Lambda handler (the SDK and its middy middleware); the bundle,
 *     run with plain node, acquires and settles against `npm start` and against the installed
 *     @sluice/local's `sluice-local`;
 *  4. a CDK app embeds `new Sluice(this, 'Limiter')`, grants its own function acquire (over
 *     HTTP and in process) and synthesizes offline, cdk-nag clean;
 *  5. `npx sluice --help` and `npx sluice plan -f examples/sluice.yaml` against `npm start`;
 *  6. @sluice/console serves the files it ships (not built again), and the installed
 *     `sluice console` serves them and forwards the page's calls to `npm start`;
 *  7. @sluice/client/ai-sdk and @sluice/client/langchain, with the AI SDK's mock model and
 *     LangChain's fake chat model, each make one call guarded by `npm start`;
 *  8. @sluice/client/in-process (with @sluice/lambdas installed as its peer), bundled by esbuild
 *     as a Lambda handler would be, decides on `npm start`'s own DynamoDB Local and table: a
 *     lease it acquires is settled over HTTP and the reverse, and both see the same limits;
 *  9. with @opentelemetry/api and the OpenTelemetry SDK's MeterProvider installed beside it,
 *     @sluice/client records a run's decisions and settled tokens, exactly.
 * Prints each step's time and each package's packed and installed size. `--keep` keeps the
 * project (its path is printed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnLocalServer } from '../test/support/spawn.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Every published package, by its folder in the repository. */
const PACKAGES = [
  'packages/core',
  'packages/client',
  'lambdas',
  'packages/local',
  'packages/cli',
  'packages/console',
  'lib',
] as const;
const keep = process.argv.includes('--keep');

const project = mkdtempSync(join(tmpdir(), 'sluice-consumer-'));
const tarballs = join(project, 'tarballs');
mkdirSync(tarballs);
const timings: [string, number][] = [];

/** Runs a command; its output is shown only when it fails. */
function run(command: string, args: readonly string[], cwd = project, env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(command, args, {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) exited ${result.status}\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}

async function step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const start = performance.now();
  process.stdout.write(`- ${name} … `);
  const value = await fn();
  const seconds = (performance.now() - start) / 1000;
  timings.push([name, seconds]);
  console.log(`${seconds.toFixed(1)} s`);
  return value;
}

/** The version this repo's lockfile installed, so the consumer gets the same one. */
const installed = (name: string): string =>
  (
    JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;

/**
 * The installed `sluice console` against `endpoint` (signing with harmless credentials: the
 * local server checks none): its page, and an API call through it; then Ctrl-C.
 */
async function consoleThroughCli(endpoint: string): Promise<void> {
  const bin = join(project, 'node_modules/@sluice/cli/bin/sluice.js');
  const child = spawn(process.execPath, [bin, 'console', '--endpoint', endpoint, '--port', '0'], {
    cwd: project,
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: 'AKIDCONSUMER',
      AWS_SECRET_ACCESS_KEY: 'not-a-real-secret',
      AWS_REGION: 'us-east-1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sluice console: ${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const found = /: (http:\/\/127\.0\.0\.1:\d+)\/console\n/.exec(output)?.[1];
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      void exited.then((code) => reject(new Error(`sluice console exited ${code}: ${output}`)));
    });
    const page = await fetch(`${url}/console`);
    const listed = await fetch(`${url}/v1/admin/resources?limit=1`);
    if (page.status !== 200 || !(await page.text()).includes('console.js') || listed.status !== 200)
      throw new Error(`unexpected: page ${page.status}, API call ${listed.status}`);
  } finally {
    child.kill('SIGINT');
    await exited;
  }
  if ((await exited) !== 0) throw new Error(`sluice console exited ${await exited} on SIGINT`);
}

/** The local API from the installed @sluice/local: its bin, run with plain node. */
const startLocal = () =>
  spawnLocalServer({}, 60_000, [join(project, 'node_modules/@sluice/local/bin/sluice-local.js')]);

const files: Record<string, string> = {
  // 1. Plain node, ESM.
  'imports.mjs': `
import { SluiceClient, fromOpenAI } from '@sluice/client';
import { estimateTokens } from '@sluice/client/estimate';
import { itemKeys, Limiter, parseLimits, ValidationError } from '@sluice/core';
const [limit] = parseLimits([{ name: 'tpm', metric: 'tokens', limit: 1000, per: 'minute' }]);
const key = itemKeys.entityBucket('key-123', 'gpt-4o');
let refused = false;
try {
  parseLimits([{ name: 'tpm', metric: 'tokens', limit: -1, per: 'minute' }]);
} catch (error) {
  refused = error instanceof ValidationError;
}
const usage = fromOpenAI({ prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } });
new SluiceClient({ endpoint: 'http://127.0.0.1:3000' });
const estimated = estimateTokens([{ role: 'user', content: 'Hello, world' }], 'gpt-4o');
if (limit?.name !== 'tpm' || !key.pk || !refused || typeof Limiter !== 'function' || usage.cached_input_tokens !== 4 || !(estimated > 0))
  throw new Error('unexpected: ' + JSON.stringify({ limit, key, refused, usage, estimated }));
console.log('ok');
`,
  // 2. Types, strict, every .d.ts checked.
  'tsconfig.json': JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      types: ['node', 'aws-lambda'],
    },
    include: ['src/**/*.ts'],
  }),
  'src/handler.ts': `
import middy from '@middy/core';
import {
  type AcquireResult,
  fromAnthropic,
  fromBedrock,
  fromOpenAI,
  SluiceClient,
  SluiceRequestError,
  type Usage,
} from '@sluice/client';
import { type SluiceGuarded, sluiceGuard } from '@sluice/client/middy';
import type { Context } from 'aws-lambda';

const sluice = new SluiceClient({ endpoint: process.env.SLUICE_URL ?? '', onUnavailable: 'deny' });
const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 2_592_000 }] as const;

interface Event {
  readonly key: string;
}
interface Result {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
}

/** A guarded handler: the "provider call" reports Bedrock usage. */
const guarded = middy(async (_event: Event, context: Context): Promise<Result> => {
  (context as Context & SluiceGuarded).sluice.usage = fromBedrock({ inputTokens: 900, outputTokens: 100 });
  return { statusCode: 200, body: 'answered' };
}).use(
  sluiceGuard<Event, Result>({
    client: sluice,
    request: (event) => ({ entity: event.key, resource: 'gpt-4o', usage: { tokens: 2_000 }, limits: [...limits] }),
  }),
);

/** Acquire and settle by hand, then through the middleware; says what remains. */
export async function handler(event: Event, context: Context) {
  const lease: AcquireResult = await sluice.acquire({
    entity: event.key,
    resource: 'gpt-4o',
    usage: { input_tokens: 1_500, output_tokens: 500 },
    limits: [...limits],
  });
  if (!lease.allowed) throw new Error(\`refused: \${lease.code}\`);
  const used: Usage = fromOpenAI({ prompt_tokens: 1_200, completion_tokens: 300 });
  const settled = await sluice.release(lease.leaseId, used);
  try {
    await sluice.release(lease.leaseId, fromAnthropic({ input_tokens: 1, output_tokens: 1 }));
  } catch (error) {
    if (!(error instanceof SluiceRequestError) || error.code !== 'lease_settled') throw error;
  }
  const answered = await guarded(event, context);
  const available = await sluice.available({ entity: event.key, resource: 'gpt-4o', limits: [...limits] });
  return { settled: settled.settled, answered, remaining: available.limits[0]?.remaining };
}
`,
  // The framework integrations' types, with the frameworks' own.
  'src/integrations.ts': `
import { SluiceClient } from '@sluice/client';
import { fromAISDK, SluiceRefusedError, sluiceMiddleware } from '@sluice/client/ai-sdk';
import { SluiceCallbackHandler } from '@sluice/client/langchain';
import { wrapLanguageModel, type LanguageModel } from 'ai';

const client = new SluiceClient({ endpoint: process.env.SLUICE_URL ?? '' });
export const guard = (model: Exclude<LanguageModel, string>) =>
  wrapLanguageModel({ model: model as never, middleware: sluiceMiddleware({ client, defaultMaxOutputTokens: 500 }) });
export const handler = new SluiceCallbackHandler({ client, entity: (run) => String(run.metadata.user) });
export const status = (error: unknown): number | undefined =>
  error instanceof SluiceRefusedError ? error.toResponse().status : undefined;
export const used = fromAISDK({ inputTokens: 3, outputTokens: 1 }).input_tokens;
`,
  // The engine embedded, as docs/sdk.md shows it: @sluice/core's public types, checked whole.
  'src/engine.ts': `
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  type AcquireResult,
  DynamoDBStore,
  itemKeys,
  LeaseSettledError,
  Limiter,
  parseLimits,
  type SettleResult,
  storeRequestHandler,
  throttlingRetries,
} from '@sluice/core';

const client = new DynamoDBClient({
  retryStrategy: throttlingRetries(),
  requestHandler: storeRequestHandler(),
});
const limiter = new Limiter({ store: new DynamoDBStore({ client, tableName: 'sluice' }) });
const limits = parseLimits([{ name: 'tpm', metric: 'tokens', limit: 200_000, per: 'minute' }]);

export async function decide(key: string): Promise<SettleResult | undefined> {
  const decision: AcquireResult = await limiter.acquire({
    checks: [{ scope: 'entity', key: itemKeys.entityBucket(key, 'gpt-4o'), limits }],
    usage: { input_tokens: 1_500, output_tokens: 500 },
  });
  if (!decision.allowed) return undefined;
  try {
    return await limiter.release(decision.leaseId, { input_tokens: 1_480, output_tokens: 870 });
  } catch (error) {
    if (error instanceof LeaseSettledError) return undefined;
    throw error;
  }
}
`,
  'run-bundle.mjs': `
const { handler } = await import('./dist/handler.mjs');
const out = await handler({ key: 'consumer-' + Date.now() }, { awsRequestId: 'consumer' });
console.log(JSON.stringify(out));
`,
  // 7. The framework integrations, one guarded call each, with each framework's own test model.
  'integrations.mjs': `
import { SluiceClient } from '@sluice/client';
import { sluiceMiddleware } from '@sluice/client/ai-sdk';
import { SluiceCallbackHandler } from '@sluice/client/langchain';
import { generateText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { FakeListChatModel } from '@langchain/core/utils/testing';
const client = new SluiceClient({ endpoint: process.env.SLUICE_URL, onUnavailable: 'deny' });
const limits = [{ name: 'out', metric: 'output_tokens', limit: 10_000, per: 2_592_000 }];
const entity = 'consumer-' + Date.now();
const usage = { inputTokens: { total: 10, noCache: 10 }, outputTokens: { total: 4 } };
const model = wrapLanguageModel({
  model: new MockLanguageModelV4({ modelId: 'gpt-4o', doGenerate: { content: [{ type: 'text', text: 'hi' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] } }),
  middleware: sluiceMiddleware({ client, entity: () => entity, request: () => ({ limits }) }),
});
const generated = await generateText({ model, prompt: 'Hello' });
const handler = new SluiceCallbackHandler({ client, resource: () => 'gpt-4o', request: () => ({ limits }) });
const answer = await new FakeListChatModel({ responses: ['ok'] }).invoke('Hello', { callbacks: [handler], metadata: { sluice_entity: entity } });
const available = await client.available({ entity, resource: 'gpt-4o', limits });
// 4 output tokens reported by the AI SDK's model; 'ok' counted (1 token) for LangChain's, which reports none.
if (generated.text !== 'hi' || answer.content !== 'ok' || generated.providerMetadata?.sluice?.degraded !== false || available.limits[0]?.remaining !== 10_000 - 4 - 1)
  throw new Error('unexpected: ' + JSON.stringify({ text: generated.text, answer: answer.content, available }));
console.log('ok');
`,
  // 9. OpenTelemetry: the SDK's metrics of a run, collected by the OTel SDK's own reader.
  'otel.mjs': `
import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
class Collected extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}
const reader = new Collected();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
const { SluiceClient } = await import('@sluice/client');
const client = new SluiceClient({ endpoint: process.env.SLUICE_URL, onUnavailable: 'deny' });
const entity = 'otel-' + Date.now();
const limits = [{ name: 'rpm', metric: 'requests', limit: 2, per: 'minute' }];
const leases = [];
for (let i = 0; i < 3; i++)
  leases.push(await client.acquire({ entity, resource: 'gpt-4o', usage: { input_tokens: 10, output_tokens: 5 }, limits }));
for (const lease of leases) if (lease.allowed) await client.release(lease.leaseId, { input_tokens: 7, output_tokens: 3 });
const { resourceMetrics } = await reader.collect();
const sum = (name, keep = () => true) =>
  resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).filter((m) => m.descriptor.name === name)
    .flatMap((m) => m.dataPoints).filter((p) => keep(p.attributes)).reduce((a, p) => a + p.value, 0);
const outcome = (o) => (a) => a['sluice.decision.outcome'] === o;
const got = {
  admitted: sum('sluice.client.decisions', outcome('admitted')),
  refused: sum('sluice.client.decisions', outcome('refused')),
  tokens: sum('sluice.client.usage.tokens'),
};
if (got.admitted !== 2 || got.refused !== 1 || got.tokens !== 20) throw new Error('unexpected: ' + JSON.stringify(got));
console.log('ok');
`,
  // 8. Sluice in process, on npm start's table; its leases and limits are the API's.
  'src/in-process.ts': `
import { SluiceClient as HttpClient } from '@sluice/client';
import { SluiceClient, type SluiceInProcessOptions } from '@sluice/client/in-process';

const options: SluiceInProcessOptions = {
  table: process.env.SLUICE_TABLE ?? 'sluice',
  dynamodbEndpoint: process.env.DYNAMODB_ENDPOINT ?? '',
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  onUnavailable: 'deny',
};
const local = new SluiceClient(options);
const http = new HttpClient({ endpoint: process.env.SLUICE_URL ?? '', onUnavailable: 'deny' });
const limits = [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 2_592_000 }] as const;

export async function run(): Promise<{ settled: boolean[]; remaining: (number | undefined)[] }> {
  const ask = { entity: 'in-process-' + Date.now(), resource: 'gpt-4o', usage: { tokens: 2_000 }, limits: [...limits] };
  const a = await local.acquire(ask);
  const b = await http.acquire(ask);
  if (!a.allowed || a.degraded || !b.allowed) throw new Error('not admitted: ' + JSON.stringify({ a, b }));
  const settled = [
    (await http.release(a.leaseId, { tokens: 1_000 })).settled,
    (await local.release(b.leaseId, { tokens: 500 })).settled,
  ];
  const remaining = await Promise.all(
    [local, http].map(async (c) => (await c.available(ask)).limits[0]?.remaining),
  );
  return { settled, remaining };
}
`,
  'run-in-process.mjs': `
const { run } = await import('./dist/in-process.mjs');
console.log(JSON.stringify(await run()));
`,
  // 6. The console's files as the package ships them.
  'console.mjs': `
import { readFileSync } from 'node:fs';
import { CONSOLE_PATH, consoleFiles, consoleServer } from '@sluice/console';
const files = await consoleFiles();
const shipped = readFileSync(new URL('./node_modules/@sluice/console/www/console.js', import.meta.url));
const script = files.find((f) => f.name === 'console.js');
const page = consoleServer(files)(CONSOLE_PATH);
const html = new TextDecoder().decode(page?.body);
if (files.length !== 3 || !script || Buffer.compare(Buffer.from(script.body), shipped) !== 0 || page?.status !== 200 || !html.includes('console.js'))
  throw new Error('unexpected: ' + JSON.stringify({ names: files.map((f) => f.name), status: page?.status }));
console.log('ok');
`,
  // 4. A CDK app embedding the construct.
  'app.mjs': `
import { Sluice } from '@sluice/cdk';
import { App, Aspects, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';

const app = new App({ outdir: 'cdk.out' });
const stack = new Stack(app, 'Consumer');
const limiter = new Sluice(stack, 'Limiter');
const role = new iam.Role(stack, 'ChatRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
const chat = new lambda.Function(stack, 'Chat', {
  runtime: lambda.Runtime.NODEJS_LATEST,
  handler: 'index.handler',
  code: lambda.Code.fromInline('export const handler = async () => ({ statusCode: 200 });'),
  role,
  environment: { SLUICE_URL: limiter.url },
});
limiter.grantAcquire(chat);
limiter.grantInProcess(chat);
Aspects.of(app).add(new AwsSolutionsChecks());
const assembly = app.synth();
const findings = assembly.stacks.flatMap((s) =>
  s.messages.filter((m) => m.level !== 'info' && String(m.entry.data).includes('AwsSolutions')),
);
if (findings.length > 0) {
  for (const f of findings) console.error(f.level, f.id, String(f.entry.data).split('\\n')[0]);
  process.exit(1);
}
const template = JSON.stringify(assembly.getStackByName('Consumer').template);
const functions = (template.match(/"AWS::Lambda::Function"/g) ?? []).length;
console.log(JSON.stringify({ functions, assets: assembly.stacks[0].assets.length }));
`,
};

try {
  await step('build (tsc -b, handler bundles)', () => run('npm', ['run', '-s', 'build'], ROOT));
  const packed = await step('npm pack, every package', () =>
    PACKAGES.map((dir) => {
      const [info] = JSON.parse(
        run('npm', ['pack', '--json', '--pack-destination', tarballs], join(ROOT, dir)),
      ) as {
        name: string;
        filename: string;
        size: number;
        unpackedSize: number;
        entryCount: number;
      }[];
      if (!info) throw new Error(`npm pack gave nothing for ${dir}`);
      return info;
    }),
  );
  const dependencies: Record<string, string> = Object.fromEntries(
    packed.map((p) => [p.name, `file:tarballs/${p.filename}`]),
  );
  for (const name of [
    '@middy/core',
    'ai',
    '@langchain/core',
    'zod',
    'aws-cdk-lib',
    'constructs',
    'cdk-nag',
    'esbuild',
    'typescript',
    '@types/node',
    '@types/aws-lambda',
    '@types/json-schema', // the AI SDK's declarations import json-schema's types
    '@opentelemetry/api',
    '@opentelemetry/sdk-metrics',
  ])
    dependencies[name] = installed(name);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify(
      { name: 'sluice-consumer', private: true, type: 'module', dependencies },
      null,
      2,
    ),
  );
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(project, file, '..'), { recursive: true });
    writeFileSync(join(project, file), text);
  }
  await step('npm install the tarballs', () =>
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error']),
  );

  await step('node imports @sluice/client and @sluice/core', () => {
    const out = run('node', ['imports.mjs']).trim();
    if (out !== 'ok') throw new Error(out);
  });
  await step('tsc --noEmit (strict, no skipLibCheck)', () =>
    run('npx', ['--no-install', 'tsc', '-p', '.']),
  );
  await step('esbuild bundles the consumer handler', () =>
    run('npx', [
      '--no-install',
      'esbuild',
      'src/handler.ts',
      '--bundle',
      '--minify',
      '--platform=node',
      '--target=node20',
      '--format=esm',
      '--external:@aws-sdk/*',
      // ESM output keeps a require for the CommonJS packages inside (as the docs show).
      "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      '--outfile=dist/handler.mjs',
      '--log-level=warning',
    ]),
  );

  await step('esbuild bundles an in-process handler', () =>
    run('npx', [
      '--no-install',
      'esbuild',
      'src/in-process.ts',
      '--bundle',
      '--minify',
      '--platform=node',
      '--target=node20',
      '--format=esm',
      '--external:@aws-sdk/*',
      "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      '--outfile=dist/in-process.mjs',
      '--log-level=warning',
    ]),
  );

  /** The bundle, run with plain node against `url`: acquires and settles, by hand and guarded. */
  const runBundle = (url: string) => {
    const out = JSON.parse(run('node', ['run-bundle.mjs'], project, { SLUICE_URL: url })) as {
      settled: boolean;
      answered: { statusCode: number };
      remaining: number;
    };
    // 1,500 by hand (1,200 + 300), then 1,000 through the middleware (900 + 100).
    if (!out.settled || out.answered.statusCode !== 200 || out.remaining !== 10_000 - 1_500 - 1_000)
      throw new Error(`unexpected: ${JSON.stringify(out)}`);
  };

  // `npm start` (the repository's, on the run's own DynamoDB Local) and the installed
  // @sluice/local's `sluice-local`, side by side.
  const [started, local] = await step('npm start and the installed sluice-local start', () =>
    Promise.all([spawnLocalServer({}, 60_000), startLocal()]),
  );
  try {
    await step('the bundle acquires and settles against npm start', () => runBundle(started.url));
    await step('… and against the installed sluice-local', () => runBundle(local.url));
    await step('@sluice/client/ai-sdk and /langchain guard a call each against npm start', () => {
      const out = run('node', ['integrations.mjs'], project, { SLUICE_URL: started.url }).trim();
      if (out !== 'ok') throw new Error(out);
    });
    await step('@sluice/client records its OpenTelemetry metrics, exactly', () => {
      const out = run('node', ['otel.mjs'], project, { SLUICE_URL: started.url }).trim();
      if (out !== 'ok') throw new Error(out);
    });
    await step("@sluice/client/in-process, bundled, decides on npm start's table", () => {
      const dynamodb = /embedded at (http:\/\/[^,\s]+)/.exec(started.output())?.[1];
      if (!dynamodb) throw new Error(`no DynamoDB endpoint in: ${started.output()}`);
      const out = JSON.parse(
        run('node', ['run-in-process.mjs'], project, {
          SLUICE_URL: started.url,
          DYNAMODB_ENDPOINT: dynamodb,
          SLUICE_TABLE: 'sluice',
          POWERTOOLS_LOG_LEVEL: 'WARN',
        }),
      ) as { settled: boolean[]; remaining: number[] };
      // Each lease settled the other way; both ways see 10,000 - 1,000 - 500.
      if (out.settled.join() !== 'true,true' || out.remaining.join() !== '8500,8500')
        throw new Error(`unexpected: ${JSON.stringify(out)}`);
    });
    await step('npx sluice --help', () => {
      const out = run('npx', ['--no-install', 'sluice', '--help']);
      if (!out.includes('plan')) throw new Error(out);
    });
    await step('npx sluice plan -f examples/sluice.yaml against npm start', () => {
      const out = run('npx', [
        '--no-install',
        'sluice',
        'plan',
        '-f',
        join(ROOT, 'examples', 'sluice.yaml'),
        '--endpoint',
        started.url,
      ]);
      if (!/create/i.test(out)) throw new Error(out);
    });
    await step('@sluice/console serves the files it ships', () => {
      const out = run('node', ['console.mjs']).trim();
      if (out !== 'ok') throw new Error(out);
    });
    await step('npx sluice console serves them and forwards to npm start', () =>
      consoleThroughCli(started.url),
    );
  } finally {
    await Promise.all([started.stop(), local.stop()]);
  }

  await step('CDK app embeds Sluice, synthesizes, cdk-nag clean', () => {
    const out = JSON.parse(run('node', ['app.mjs'])) as { functions: number };
    if (out.functions < 2) throw new Error(`unexpected: ${JSON.stringify(out)}`);
  });

  console.log('\npackage           packed    installed  files');
  for (const p of packed) {
    console.log(
      `${p.name.padEnd(16)} ${(p.size / 1024).toFixed(1).padStart(7)} KB ${(p.unpackedSize / 1024).toFixed(1).padStart(8)} KB ${String(p.entryCount).padStart(6)}`,
    );
  }
  const total = timings.reduce((sum, [, s]) => sum + s, 0);
  console.log(
    `\nconsumer test passed in ${total.toFixed(1)} s${keep ? ` (kept: ${project})` : ''}`,
  );
} finally {
  if (!keep) rmSync(project, { recursive: true, force: true });
}
