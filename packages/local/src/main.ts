/**
 * `npm start`: DynamoDB Local (embedded) + the API on PORT, the same handlers as in AWS.
 *
 * Environment:
 * - PORT: where to serve. @default 3000
 * - DYNAMODB_ENDPOINT: use this DynamoDB instead of starting one (then no Java is started).
 * - SLUICE_DATA_DIR: keep DynamoDB Local's data in this directory. @default in memory
 * - SLUICE_TABLE_NAME: @default "sluice"
 * - POWERTOOLS_LOG_LEVEL: @default WARN (INFO logs every decision)
 */
import { mkdirSync } from 'node:fs';
import { ensureTable } from '@sluice/core';
import { ENV, POWERTOOLS_ENV } from '@sluice/lambdas/environment';
import { routes } from '@sluice/lambdas/routes';
import {
  type DynamoDBLocal,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  localClient,
  startDynamoDBLocal,
} from './dynamodb-local.js';
import { startLocalServer } from './server.js';

const env = process.env;
env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
env[POWERTOOLS_ENV.logLevel] ??= 'WARN';
env[POWERTOOLS_ENV.metricsDisabled] ??= 'true';
const tableName = env[ENV.tableName] ?? 'sluice';
env[ENV.tableName] = tableName;

const port = Number(env.PORT ?? 3000);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`PORT must be a port number, not "${env.PORT}"`);
  process.exit(2);
}

let db: DynamoDBLocal | undefined;

/** Says what went wrong in one line, stops DynamoDB Local, and exits. */
async function fail(message: string): Promise<never> {
  console.error(`sluice: ${message}`);
  await db?.stop();
  process.exit(1);
}

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
client.destroy();

const server = await startLocalServer({ routes, port }).catch((error: { code?: string }) =>
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
  await db?.stop();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const acquirePath = routes.find((route) => route.operation === 'acquire')?.path;
const example = JSON.stringify({
  entity: 'key-123',
  resource: 'gpt-4o',
  usage: { input_tokens: 1500, output_tokens: 500 },
  limits: [{ name: 'tpm', metric: 'tokens', limit: 10000, per: 'minute' }],
});
console.log(`Sluice is listening on ${server.url} (DynamoDB: ${db ? `embedded, ${env.SLUICE_DATA_DIR ?? 'in memory'}` : endpoint}, table ${tableName})
No SigV4 checks locally. Try:

  curl -s ${server.url}${acquirePath} -H 'content-type: application/json' -d '${example}'

Ctrl-C stops the server and DynamoDB Local.`);
