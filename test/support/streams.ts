/**
 * A table's stream on the run's DynamoDB Local, read as the usage aggregator reads it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { ItemChange } from '@sluice/core/internal';
import { DynamoDBStreamsClient, LOCAL_CREDENTIALS, LOCAL_REGION, readStream } from '@sluice/local';
import { inject } from 'vitest';

/** A DynamoDB Streams client of the run's DynamoDB Local, or of the one at `endpoint`. */
export function localStreams(endpoint: string = inject('dynamoEndpoint')): DynamoDBStreamsClient {
  return new DynamoDBStreamsClient({
    endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
}

/**
 * Every change the stream of `table` holds now, in stream order, as a fresh reader sees it (on
 * the run's DynamoDB Local, or the one at `endpoint`).
 */
export function streamed(
  table: { readonly client: DynamoDBClient; readonly tableName: string },
  endpoint?: string,
): Promise<ItemChange[]> {
  return readStream({
    client: table.client,
    streams: localStreams(endpoint),
    tableName: table.tableName,
  });
}
