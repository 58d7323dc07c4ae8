/**
 * `npm start`: DynamoDB Local (embedded) + the API on PORT, the same handlers as in AWS.
 *
 * Environment:
 * - PORT: where to serve. @default 3000
 * - DYNAMODB_ENDPOINT: use this DynamoDB instead of starting one (then no Java is started).
 * - SLUICE_DATA_DIR: keep DynamoDB Local's data in this directory. @default in memory
 * - SLUICE_TABLE_NAME: @default "sluice"
 * - POWERTOOLS_LOG_LEVEL: @default WARN (INFO logs every decision)
 * - SLUICE_ALERT_WEBHOOK: POST budget alerts to this URL. @default alerts are only listed
 * - SLUICE_AGGREGATOR_ENDPOINT: the DynamoDB the usage aggregator reads the stream of and
 *   writes to. @default the same as the handlers (tests point it at the aggregator's own IAM)
 * - SLUICE_FUNCTION_TIMEOUT_MS: how long a request may run, as a function's timeout in AWS; a
 *   decision that cannot finish in time (a slow DynamoDB) answers 503 before it. @default 10000
 * - SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: `1` takes the caller's IAM principal ARN from
 *   the x-sluice-principal header, to try entities' `callers` locally. Anyone who can reach the
 *   port can then claim any principal. @default off: requests carry no principal
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { CONSOLE_PATH, consoleFiles, consoleServer } from '@sluice/console';
import {
  DynamoDBAdminStore,
  ensureTable,
  storeRequestHandler,
  UsageAggregator,
} from '@sluice/core';
import { combineWrites, own, SERVICE_DEFAULTS, UsageProgress } from '@sluice/core/internal';
import {
  aggregatorEnvironment,
  auditRetentionDays,
  ENV,
  loadEnvironment,
  POWERTOOLS_ENV,
} from '@sluice/lambdas/environment';
import { routes } from '@sluice/lambdas/routes';
import { getRuntime, logger } from '@sluice/lambdas/runtime';
import { OTEL_ENTITY_ENV } from '@sluice/lambdas/telemetry';
import {
  type DynamoDBLocal,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  localClient,
  startDynamoDBLocal,
} from './dynamodb-local.js';
import {
  concurrentInvocations,
  LOCAL_FUNCTION_TIMEOUT_MS,
  LOCAL_PRINCIPAL_HEADER,
  startLocalServer,
} from './server.js';
import { DynamoDBStreamsClient, startStreamReader } from './stream.js';
import { webhookSender } from './webhook.js';

const env = process.env;
env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Requests run concurrently here, each in an invocation context of its own (see
// startLocalServer): the store of those contexts is made now, before anything logs or calls AWS.
await concurrentInvocations();
env[POWERTOOLS_ENV.logLevel] ??= 'WARN';
env[POWERTOOLS_ENV.metricsDisabled] ??= 'true';
const tableName = env[ENV.tableName] ?? 'sluice';
env[ENV.tableName] = tableName;

// Unset or empty: 3000; 0: any free port. Digits only (Number('') is 0, Number('0x10') 16).
const portText = env.PORT || '3000';
const port = Number(portText);
if (!/^\d{1,5}$/.test(portText) || port > 65_535) {
  console.error(`PORT must be a port number, not "${env.PORT}"`);
  process.exit(2);
}

const functionTimeoutMs = Number(env.SLUICE_FUNCTION_TIMEOUT_MS ?? LOCAL_FUNCTION_TIMEOUT_MS);
if (!Number.isInteger(functionTimeoutMs) || functionTimeoutMs < 1) {
  console.error(
    `SLUICE_FUNCTION_TIMEOUT_MS must be a whole number of milliseconds, not "${env.SLUICE_FUNCTION_TIMEOUT_MS}"`,
  );
  process.exit(2);
}

/** A switch: `1` on, unset (or empty) off; anything else refuses to start. */
function flag(name: string): boolean {
  const value = own(env, name) ?? '';
  if (value !== '' && value !== '1') {
    console.error(`${name} must be 1 (on) or unset (off), not "${value}"`);
    process.exit(2);
  }
  return value === '1';
}
const TRUST_PRINCIPAL = 'SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER';
const trustPrincipalHeader = flag(TRUST_PRINCIPAL);
flag(OTEL_ENTITY_ENV);

let db: DynamoDBLocal | undefined;

/** Says what went wrong in one line, stops DynamoDB Local, and exits. */
async function fail(message: string): Promise<never> {
  console.error(`sluice: ${message}`);
  await db?.stop();
  process.exit(1);
}

// Every variable the handlers read, checked before anything starts: a bad one refuses to start
// here rather than fail requests later (the admin function's and the aggregator's too).
let settings: ReturnType<typeof aggregatorEnvironment>;
try {
  loadEnvironment();
  auditRetentionDays();
  settings = aggregatorEnvironment();
} catch (error) {
  settings = await fail(error instanceof Error ? error.message : String(error));
}

// Until the server is up, a stop exits at once: through process.exit, which stops DynamoDB
// Local's Java with this process (startDynamoDBLocal's exit hook); a death by the signal itself
// would leave Java running.
const exitWhileStarting = (signal: NodeJS.Signals) => process.exit(signal === 'SIGINT' ? 130 : 143);
process.once('SIGINT', exitWhileStarting);
process.once('SIGTERM', exitWhileStarting);

let endpoint = env.DYNAMODB_ENDPOINT;
if (!endpoint) {
  if (env.SLUICE_DATA_DIR) mkdirSync(env.SLUICE_DATA_DIR, { recursive: true });
  db = await startDynamoDBLocal(env.SLUICE_DATA_DIR ? { dataDir: env.SLUICE_DATA_DIR } : {}).catch(
    (error: unknown) => fail(error instanceof Error ? error.message : String(error)),
  );
  endpoint = db.endpoint;
}
env[ENV.dynamodbEndpoint] = endpoint;
// DynamoDB Local checks no credentials; give the SDK harmless ones unless real ones are set.
env.AWS_REGION ??= LOCAL_REGION;
if (!env.AWS_ACCESS_KEY_ID && !env.AWS_PROFILE) {
  env.AWS_ACCESS_KEY_ID = LOCAL_CREDENTIALS.accessKeyId;
  env.AWS_SECRET_ACCESS_KEY = LOCAL_CREDENTIALS.secretAccessKey;
}

const client = localClient(endpoint);
await ensureTable(client, tableName).catch(() =>
  fail(`cannot reach DynamoDB at ${endpoint} to create table ${tableName}`),
);

// Usage history: the same aggregator as the Lambda on the table's stream, reading the stream of
// DynamoDB Local; refusal counts are written every few seconds, as a busy container does.
// One process serves every request here, many at once (a Lambda container serves one): the
// acquires on one item combine their writes, as a server embedding the engine does.
getRuntime().engine.combiner = combineWrites();

const webhook = env.SLUICE_ALERT_WEBHOOK;
const aggregatorEndpoint = env.SLUICE_AGGREGATOR_ENDPOINT ?? endpoint;
const aggregatorClient = localClient(aggregatorEndpoint);
const aggregatorStore = new DynamoDBAdminStore({ client: aggregatorClient, tableName });
const aggregator = new UsageAggregator({
  store: aggregatorStore,
  // A server started again on this host and port sends the alerts its predecessor claimed and
  // never sent (it was stopped): only one server can hold a port, and another leaves them to it.
  // On any free port (PORT=0) no server takes another's place: each has a name of its own.
  ...(port !== 0 ? { claimer: `local:${hostname()}:${port}` } : {}),
  retentionDays: settings.usageRetentionDays,
  ...(webhook ? { sendAlert: webhookSender(webhook) } : {}),
  onSendFailure: 'keep',
  onError: (error) => logger.error('a budget alert could not be delivered', { error }),
});
/** The functions whose writes (leases) usage history counts. */
const USAGE_WRITERS = new Set<string>(['acquire', 'adjust', 'release']);
const reader = await startStreamReader({
  client: aggregatorClient,
  streams: new DynamoDBStreamsClient({
    endpoint: aggregatorEndpoint,
    region: env.AWS_REGION,
    credentials: LOCAL_CREDENTIALS,
    // Reads only: one left unanswered fails, and the reader reads again from where it was.
    requestHandler: {
      ...storeRequestHandler(),
      requestTimeout: SERVICE_DEFAULTS.storeRequestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  }),
  tableName,
  apply: async (changes) => {
    const { setAside, expired, unplaced } = await aggregator.apply(changes);
    // The stream is read from its oldest record at each start: with kept data (SLUICE_DATA_DIR)
    // DynamoDB Local may hand over records older than DynamoDB Streams keeps, not counted.
    if (expired > 0) logger.info('usage records older than a day were not counted', { expired });
    if (setAside.length > 0)
      logger.warn('usage DynamoDB refused to count in full (left out)', { setAside });
    if (unplaced.length > 0)
      logger.warn('usage records whose context no row can hold (not counted)', { unplaced });
  },
  onError: (error) => logger.error('usage aggregation failed; reading again', { error }),
  onRecordsLost: (shard) =>
    logger.error('usage records may have been lost: trimmed from the stream unread', { shard }),
  // Health reads it: counted batches, failures (GetRecords' too) and recovery.
  progress: new UsageProgress({
    store: aggregatorStore,
    onError: (error) => logger.warn('usage progress not recorded (for health)', { error }),
  }),
}).catch((error: unknown) =>
  fail(
    `cannot read the stream of table ${tableName}: ${error instanceof Error ? error.message : String(error)}`,
  ),
);
const flushDenials = (all: boolean) =>
  getRuntime()
    .denials.flushDue(all)
    .catch((error: unknown) => logger.error('refusal counts not written yet', { error }));
const denialTimer = setInterval(() => void flushDenials(false), 1_000);
// An alert another server claimed and never sent is sent here once the claim lapses, however
// quiet the stream is by then (the batch that found it is not read again here).
const lapsedTimer = setInterval(
  () =>
    void aggregator
      .sendLapsedAlerts()
      .catch((error: unknown) => logger.error('a budget alert could not be delivered', { error })),
  5_000,
);

// The console (its static files; built from the sources when run from the repository).
const pages = consoleServer(
  await consoleFiles().catch((error: unknown) =>
    fail(`cannot load the console: ${error instanceof Error ? error.message : String(error)}`),
  ),
);
const server = await startLocalServer({
  routes,
  pages,
  port,
  trustPrincipalHeader,
  functionTimeoutMs,
  // Usage history follows the writes it counts at once, however quiet the stream was before.
  afterCall: (route) => {
    if (USAGE_WRITERS.has(route.function)) reader.wake();
  },
}).catch((error: { code?: string }) =>
  fail(
    error.code === 'EADDRINUSE'
      ? `port ${port} is already in use: set PORT to another one`
      : `cannot serve on port ${port}: ${String(error)}`,
  ),
);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.close();
  clearInterval(denialTimer);
  clearInterval(lapsedTimer);
  await flushDenials(true);
  await reader.stop();
  client.destroy();
  aggregatorClient.destroy();
  await db?.stop();
  process.exit(0);
}
process.off('SIGINT', exitWhileStarting);
process.off('SIGTERM', exitWhileStarting);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const acquirePath = routes.find((route) => route.operation === 'acquire')?.path;
const example = JSON.stringify({
  entity: 'key-123',
  resource: 'gpt-4o',
  usage: { input_tokens: 1500, output_tokens: 500 },
  limits: [{ name: 'tpm', metric: 'tokens', limit: 10000, per: 'minute' }],
});
console.log(`Sluice is listening on ${server.url} (DynamoDB: ${db ? `embedded at ${endpoint}, ${env.SLUICE_DATA_DIR ?? 'in memory'}` : endpoint}, table ${tableName})
${
  trustPrincipalHeader
    ? `UNSAFE: the caller's IAM principal is whatever the ${LOCAL_PRINCIPAL_HEADER} header claims (${TRUST_PRINCIPAL}=1). Never expose this port.`
    : 'No SigV4 checks locally, and no caller identity.'
} Try:

  curl -s ${server.url}${acquirePath} -H 'content-type: application/json' -d '${example}'

The console: ${server.url}${CONSOLE_PATH}

Ctrl-C stops the server and DynamoDB Local.`);
