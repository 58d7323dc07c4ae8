/**
 * The admin side of the DynamoDB store: everything the engine needs, and listings of one
 * partition (stored configuration, an entity's buckets, the audit trail).
 */
import { QueryCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBStore, marshalKey, readOptions, translate, unmarshal } from './dynamodb.js';
import { TABLE_SCHEMA } from './schema.js';
import type { AdminStore, QueryOptions, QueryPage } from './types.js';

/**
 * @example
 * const admin = new ConfigAdmin({ store: new DynamoDBAdminStore({ client, tableName: 'sluice' }) });
 */
export class DynamoDBAdminStore extends DynamoDBStore implements AdminStore {
  async query(pk: string, options: QueryOptions): Promise<QueryPage> {
    const between = options.between;
    try {
      const out = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: between ? '#pk = :pk AND #sk BETWEEN :a AND :b' : '#pk = :pk',
          ExpressionAttributeNames: {
            '#pk': TABLE_SCHEMA.partitionKey,
            ...(between ? { '#sk': TABLE_SCHEMA.sortKey } : {}),
          },
          ExpressionAttributeValues: {
            ':pk': { S: pk },
            ...(between ? { ':a': { S: between[0] }, ':b': { S: between[1] } } : {}),
          },
          ConsistentRead: true,
          Limit: options.limit,
          ScanIndexForward: !options.descending,
          ...(options.after !== undefined
            ? { ExclusiveStartKey: marshalKey({ pk, sk: options.after }) }
            : {}),
        }),
        readOptions(),
      );
      const items = (out.Items ?? []).map((raw) => {
        const state = unmarshal(raw) ?? {};
        return { key: { pk, sk: String(state[TABLE_SCHEMA.sortKey]) }, state };
      });
      const last = out.LastEvaluatedKey?.[TABLE_SCHEMA.sortKey]?.S;
      return { items, ...(last !== undefined ? { next: last } : {}) };
    } catch (error) {
      throw translate(error);
    }
  }
}
