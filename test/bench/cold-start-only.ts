/**
 * `npm run -s bench:cold-start`: the acquire function's cold start beside a bare handler's,
 * alone (the whole bench takes minutes), after building the bundles.
 * The same figures as `cold_start` in `npm run bench -- --json`.
 */
import { DynamoDB } from '@aws-sdk/client-dynamodb';
import { ensureTable } from '@sluice/core';
import { LOCAL_CREDENTIALS, LOCAL_REGION, startDynamoDBLocal } from '@sluice/local';
import { acquireBundle, coldStart } from './cold-start.js';

const bundle = acquireBundle();
if (bundle.olderThan) {
  console.error(`warning: ${bundle.olderThan} is newer than the bundle (npm run build first)`);
}
const db = await startDynamoDBLocal();
try {
  const client = new DynamoDB({
    endpoint: db.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  await ensureTable(client, 'sluice-bench', { stream: false });
  // DynamoDB Local's JVM answers its first requests slowly: warm it as the whole bench has.
  for (let i = 0; i < 200; i++) await client.describeTable({ TableName: 'sluice-bench' });
  const result = await coldStart({ endpoint: db.endpoint, tableName: 'sluice-bench' });
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `median cold start: acquire ${result.median_ms_acquire} ms, bare ${result.median_ms_bare} ms: +${result.difference_ms} ms (target: at most +${result.target_ms})`,
  );
  client.destroy();
} finally {
  await db.stop();
}
