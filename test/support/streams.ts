/**
 * A table's stream on the run's DynamoDB Local, read as the usage aggregator reads it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { itemKeys } from '@sluice/core';
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

/**
 * A stream record of an entity's bucket item for `resource` whose `ev` attribute (its usage
 * event) is `ev`, at `sequence` of stream shard `shard`: a record handed to the aggregator as
 * the stream would, its item written by hand.
 */
export function streamEvent(
  shard: string,
  resource: string,
  { entity, ev, sequence, atMs }: { entity: string; ev: string; sequence: number; atMs: number },
): ItemChange {
  const key = itemKeys.entityBucket(entity, resource);
  return {
    key,
    newImage: { pk: key.pk, sk: key.sk, ev },
    position: { shard, sequence: String(sequence), atMs },
  };
}
