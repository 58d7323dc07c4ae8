/**
 * `@sluice/client/in-process` when its setup is wrong: a function without `grantInProcess`, or
 * a `table` option naming a table that is not there. Over HTTP, a caller without the grant gets
 * API Gateway's 403, which the SDK throws. In process, DynamoDB's AccessDeniedException or
 * ResourceNotFoundException is thrown to the caller as well: never answered as an outage, which
 * a client failing open would admit through without limit.
 */
import { SluiceClient as HttpClient, SluiceRequestError } from '@sluice/client';
import { SluiceClient } from '@sluice/client/in-process';
import { ensureTable } from '@sluice/core';
import { LOCAL_CREDENTIALS, LOCAL_REGION, localClient } from '@sluice/local';
import { describe, expect, inject, it, vi } from 'vitest';
import { tableName } from '../support/api.js';
import { startIamProxy } from '../support/iam-proxy.js';

vi.hoisted(() => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
});

const ask = {
  entity: 'denied-role',
  resource: 'model',
  usage: { tokens: 1 },
  limits: [{ name: 'tpm', metric: 'tokens', limit: 1, per: 'day' as const }],
};

/** An acquire's outcome, a thrown error as a value. */
const outcome = (call: Promise<unknown>) =>
  call.catch((error: unknown) => ({ thrown: (error as Error).name }));

describe('a caller not allowed to use Sluice', () => {
  it('over HTTP: the API refuses (403) and the SDK throws; nothing is admitted', async () => {
    const http = new HttpClient({
      endpoint: 'http://127.0.0.1:1',
      fetch: async () =>
        new Response(JSON.stringify({ message: 'Forbidden' }), {
          status: 403,
          headers: { 'content-type': 'application/json' },
        }),
    });
    await expect(http.acquire(ask)).rejects.toBeInstanceOf(SluiceRequestError);
  });

  it('in process, without grantInProcess: is not admitted', async () => {
    const table = tableName('ip-denied');
    await ensureTable(localClient(inject('dynamoEndpoint')), table);
    // A role with no statement on the table: every DynamoDB request is AccessDenied.
    const proxy = await startIamProxy([], { table }, inject('dynamoEndpoint'));
    try {
      const sluice = new SluiceClient({
        table,
        dynamodbEndpoint: proxy.url,
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
      });
      const answers = [await outcome(sluice.acquire(ask)), await outcome(sluice.acquire(ask))];
      expect(proxy.denied.length).toBeGreaterThan(0); // DynamoDB did refuse the role
      // The limit holds 1 token a day: at most one of these may be admitted, and not as an outage.
      for (const answer of answers) expect(answer).not.toMatchObject({ allowed: true });
    } finally {
      await proxy.close();
    }
  });

  it('in process, with a table name that is not there: is not admitted', async () => {
    const sluice = new SluiceClient({
      table: 'no-such-table',
      dynamodbEndpoint: inject('dynamoEndpoint'),
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const answers = [await outcome(sluice.acquire(ask)), await outcome(sluice.acquire(ask))];
    for (const answer of answers) expect(answer).not.toMatchObject({ allowed: true });
  });
});
