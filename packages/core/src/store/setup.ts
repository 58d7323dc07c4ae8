/**
 * Creating the table outside AWS (DynamoDB Local, tests): apart from dynamodb.ts so the handlers'
 * bundles leave it out.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceInUseException,
  ResourceNotFoundException,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { translate } from './dynamodb.js';
import { TABLE_SCHEMA } from './schema.js';

/** The table's stream: what the usage aggregator reads. */
const TABLE_STREAM = { StreamEnabled: true, StreamViewType: TABLE_SCHEMA.streamView } as const;

/**
 * Creates the table (on-demand, TTL on, a stream of new and old images) unless it exists, and
 * turns the stream on for a table made without one; for DynamoDB Local and tests. In AWS the
 * CDK stack owns the table.
 *
 * `timeToLive: false` is for tests whose clocks stand in the past: DynamoDB Local really
 * deletes items whose TTL has passed, within seconds. `stream: false` is for the benchmark,
 * whose peer's table has none.
 */
export async function ensureTable(
  client: DynamoDBClient,
  tableName: string,
  options: { readonly timeToLive?: boolean; readonly stream?: boolean } = {},
): Promise<void> {
  const stream = options.stream ?? true;
  try {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (stream && !Table?.StreamSpecification?.StreamEnabled) {
      await client.send(
        new UpdateTableCommand({ TableName: tableName, StreamSpecification: TABLE_STREAM }),
      );
    }
    return;
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw translate(error);
  }
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: TABLE_SCHEMA.partitionKey, AttributeType: 'S' },
          { AttributeName: TABLE_SCHEMA.sortKey, AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: TABLE_SCHEMA.partitionKey, KeyType: 'HASH' },
          { AttributeName: TABLE_SCHEMA.sortKey, KeyType: 'RANGE' },
        ],
        ...(stream ? { StreamSpecification: TABLE_STREAM } : {}),
      }),
    );
    if (options.timeToLive === false) return;
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TABLE_SCHEMA.ttlAttribute, Enabled: true },
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw translate(error); // created concurrently
  }
}
