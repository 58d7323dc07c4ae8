/**
 * One DynamoDB Local for the whole run (each test file uses its own table), stopped at the end:
 * no Java process outlives `npm test`. Vitest calls this once per project that lists it; the
 * projects share the first one's instance (global setup runs in the one main process).
 */
import { type DynamoDBLocal, startDynamoDBLocal } from '@sluice/local';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamoEndpoint: string;
  }
}

interface Shared {
  db: Promise<DynamoDBLocal>;
  users: number;
}

const KEY = Symbol.for('sluice.test.dynamodb-local');
const registry = globalThis as { [KEY]?: Shared };

export default async function setup(project: TestProject) {
  registry[KEY] ??= { db: startDynamoDBLocal(), users: 0 };
  const shared = registry[KEY];
  shared.users++;
  const db = await shared.db;
  project.provide('dynamoEndpoint', db.endpoint);
  return async () => {
    if (--shared.users > 0) return;
    delete registry[KEY];
    await db.stop();
  };
}
