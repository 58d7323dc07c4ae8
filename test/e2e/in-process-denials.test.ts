/**
 * `@sluice/client/in-process`: refusal counts for usage history. Each caller process gathers
 * its own; a refusal is written once `denialFlushMs` has passed, whether or not the process
 * acquires again (a worker whose last call was refused, a script that then ends).
 */

import { SluiceClient as HttpClient } from '@sluice/client';
import { SluiceClient } from '@sluice/client/in-process';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '@sluice/local';
import { expect, inject, it, vi } from 'vitest';
import { fileApi } from '../support/api.js';

vi.hoisted(() => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
});

const api = fileApi('ip-denials');

it('writes a refusal for usage history after denialFlushMs, without another acquire', async () => {
  const sluice = new SluiceClient({
    table: api.tableName,
    dynamodbEndpoint: inject('dynamoEndpoint'),
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    denialFlushMs: 200,
  });
  const limits = [{ name: 'tiny', metric: 'tokens', limit: 100, per: 'day' as const }];
  const ask = { entity: 'denied', resource: 'model', usage: { tokens: 60 }, limits };
  const first = await sluice.acquire(ask);
  expect(first).toMatchObject({ allowed: true, degraded: false });
  // Refused: the bucket holds 40. The caller gives up; this process acquires nothing more.
  expect(await sluice.acquire(ask)).toMatchObject({ allowed: false, code: 'rate_limited' });
  if (first.allowed) await sluice.release(first.leaseId, { tokens: 60 });

  const http = new HttpClient({ endpoint: api.url });
  await vi.waitFor(
    async () => {
      const history = await http.usage({ entity: 'denied', granularity: 'day' });
      expect(history.items[0]).toMatchObject({ leases: 1, denied: { tiny: 1 } });
    },
    { timeout: 15_000, interval: 250 },
  );
});
