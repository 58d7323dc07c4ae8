/**
 * One DynamoDB Local for the whole run (each test file uses its own table), stopped at the end:
 * no Java process outlives `npm test`.
 */
import { startDynamoDBLocal } from '@sluice/local';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamoEndpoint: string;
  }
}

export default async function setup(project: TestProject) {
  const db = await startDynamoDBLocal();
  project.provide('dynamoEndpoint', db.endpoint);
  return () => db.stop();
}
