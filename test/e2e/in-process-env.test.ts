/**
 * `@sluice/client/in-process` in a function whose environment names Sluice's variables for its
 * own reasons (SLUICE_TABLE_NAME, SLUICE_DYNAMODB_ENDPOINT, AWS_LAMBDA_FUNCTION_NAME): importing
 * it and making a client for another table touches that table only, through the client's own
 * options; the handlers it loads read nothing of the function's environment at load.
 */
import { createServer, type Socket } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ensureTable } from '@sluice/core';
import { afterAll, expect, inject, it, vi } from 'vitest';
import { tableName } from '../support/api.js';

vi.hoisted(() => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
});

const CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };
const sockets = new Set<Socket>();
/** Some other DynamoDB the function's environment names: it counts who connects. */
const elsewhere = createServer((socket) => {
  sockets.add(socket);
});
afterAll(() => {
  for (const s of sockets) s.destroy();
  elsewhere.close();
});

it('reads nothing through the environment of the function it runs in', async () => {
  await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
  const address = elsewhere.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const table = tableName('ip-env');
  await ensureTable(
    new DynamoDBClient({
      endpoint: inject('dynamoEndpoint'),
      region: 'us-east-1',
      credentials: CREDENTIALS,
    }),
    table,
  );

  // The caller is a Lambda function that happens to have SLUICE_* variables of its own.
  process.env.AWS_LAMBDA_FUNCTION_NAME = 'chat';
  process.env.AWS_REGION = 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID = 'local';
  process.env.AWS_SECRET_ACCESS_KEY = 'local';
  process.env.SLUICE_TABLE_NAME = 'chat-app-own-table';
  process.env.SLUICE_DYNAMODB_ENDPOINT = `http://127.0.0.1:${port}`;

  const { SluiceClient } = await import('@sluice/client/in-process');
  const sluice = new SluiceClient({
    table,
    dynamodbEndpoint: inject('dynamoEndpoint'),
    region: 'us-east-1',
    credentials: CREDENTIALS,
  });
  const answer = await sluice.acquire({
    entity: 'env',
    resource: 'model',
    usage: { tokens: 1 },
    limits: [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute' }],
  });
  expect(answer).toMatchObject({ allowed: true, degraded: false });
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Nobody should have connected to the DynamoDB the function's own variables name.
  expect(sockets.size).toBe(0);
});
