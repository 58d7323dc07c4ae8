/**
 * The one DynamoDB table: keys and TTL attribute from core's schema, on-demand, point-in-time
 * recovery, and a stream of new and old images.
 */
import { TABLE_SCHEMA } from '@sluice/core/internal';
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';

/** What the table takes from the construct's props. */
export interface TableOptions {
  readonly removalPolicy?: RemovalPolicy;
  readonly deletionProtection?: boolean;
  readonly encryptionKey?: kms.IKey;
}

export function sluiceTable(scope: Construct, options: TableOptions): dynamodb.Table {
  return new dynamodb.Table(scope, 'Table', {
    partitionKey: { name: TABLE_SCHEMA.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: TABLE_SCHEMA.sortKey, type: dynamodb.AttributeType.STRING },
    timeToLiveAttribute: TABLE_SCHEMA.ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    stream: dynamodb.StreamViewType[TABLE_SCHEMA.streamView],
    deletionProtection: options.deletionProtection ?? true,
    removalPolicy: options.removalPolicy ?? RemovalPolicy.RETAIN,
    ...(options.encryptionKey
      ? {
          encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
          encryptionKey: options.encryptionKey,
        }
      : {}),
  });
}
