/**
 * The admin routes' reads (top entities, alerts, every GET) answer 503 at the caller's deadline
 * while DynamoDB stops answering, over HTTP against the local server as `npm start` runs it.
 */
import { type DynamoDBLocal, startDynamoDBLocal } from '@sluice/local';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, request, startApi, tableName } from '../support/api.js';

describe('reading top entities and alerts while DynamoDB stops answering', () => {
  let db: DynamoDBLocal;
  /** A function timeout (6 s) far longer than its callers wait. */
  let patient: Api;

  beforeAll(async () => {
    db = await startDynamoDBLocal(); // its own: this block pauses it
    patient = await startApi(tableName('admin-read-stall'), {
      DYNAMODB_ENDPOINT: db.endpoint,
      SLUICE_FUNCTION_TIMEOUT_MS: '6000',
    });
  });

  afterAll(async () => {
    if (db?.pid) process.kill(db.pid, 'SIGCONT');
    await patient?.stop();
    await db?.stop();
  });

  it("answer 503 within the caller's timeout, as usage history does, long before the function's", async () => {
    const paths = [
      '/v1/usage?entity=stalled',
      '/v1/admin/usage/overview',
      '/v1/admin/usage/top',
      '/v1/admin/usage/top?period=month&by=denied',
      '/v1/admin/alerts',
      '/v1/admin/alerts?entity=stalled',
    ];
    // Warm: each route answers once while DynamoDB does.
    for (const path of paths)
      expect((await request('GET', `${patient.url}${path}`)).status).toBe(200);
    const pid = db.pid as number;

    process.kill(pid, 'SIGSTOP');
    const answers = await Promise.all(
      paths.map(async (path) => {
        const started = Date.now();
        const answer = await request(
          'GET',
          `${patient.url}${path}`,
          undefined,
          'application/json',
          {
            'x-sluice-timeout-ms': '500',
          },
        );
        return { path, answer, ms: Date.now() - started };
      }),
    );
    process.kill(pid, 'SIGCONT');

    for (const { path, answer, ms } of answers) {
      expect(answer.status, path).toBe(503);
      expect(answer.headers.get('content-type'), path).toBe('application/problem+json');
      expect(answer.body, path).toMatchObject({ code: 'unavailable' });
      // The caller's 500 ms and a margin for a busy machine; the function's timeout is 6,000.
      expect(ms, path).toBeLessThan(3_000);
    }
  });
});
