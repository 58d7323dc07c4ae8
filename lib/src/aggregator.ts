/**
 * Usage history and budget alerts: the aggregator function on the table's stream, the queue that
 * holds the stream positions of batches it could not count, and the EventBridge bus it puts
 * budget alerts on.
 */

import { AGGREGATOR_ENV } from '@sluice/lambdas/environment';
import { Duration } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { type FunctionOptions, sluiceFunction } from './functions.js';

/** The aggregator and what it works with. */
export interface Aggregation {
  readonly aggregator: lambda.Function;
  /** Batches of the stream the aggregator could not count after its retries. */
  readonly failures: sqs.Queue;
  /** The bus budget alerts are put on: the one given, else a new one. */
  readonly alertBus: events.IEventBus;
}

/** The aggregator on `options.table`'s stream, putting budget alerts on `alertBus` (or a new bus). */
export function sluiceAggregator(
  scope: Construct,
  options: FunctionOptions,
  alertBus: events.IEventBus | undefined,
): Aggregation {
  // (CDK's classes and interfaces disagree under exactOptionalPropertyTypes: hence the casts.)
  const bus = alertBus ?? (new events.EventBus(scope, 'AlertBus') as unknown as events.IEventBus);
  const aggregator = sluiceFunction(scope, 'aggregator', options, {
    timeout: Duration.seconds(60),
    environment: { [AGGREGATOR_ENV.eventBus]: bus.eventBusName },
  });
  bus.grantPutEventsTo(aggregator);
  const failures = new sqs.Queue(scope, 'AggregatorFailures', {
    enforceSSL: true,
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    retentionPeriod: Duration.days(14),
  });
  suppressFindings(aggregator, failures);
  aggregator.addEventSource(
    new DynamoEventSource(options.table as unknown as dynamodb.ITable, {
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: 100,
      // Up to 5 s of a stream in one batch: a lease's acquire and settlements that fall in one
      // batch are counted once, at their latest.
      maxBatchingWindow: Duration.seconds(5),
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      // For the shard id Lambda then puts in each event: usage rows count each record once by
      // its shard and sequence number. The handler keeps no state across a window.
      tumblingWindow: Duration.minutes(15),
      // One batch of a shard at a time (the default, said here): records in stream order.
      parallelizationFactor: 1,
      retryAttempts: 10,
      onFailure: new SqsDlq(failures),
      // TTL deletions carry nothing to count.
      filters: [
        lambda.FilterCriteria.filter({ eventName: lambda.FilterRule.or('INSERT', 'MODIFY') }),
      ],
    }),
  );
  return { aggregator, failures, alertBus: bus };
}

/** The cdk-nag findings the aggregator's wiring raises by design, with why. */
function suppressFindings(aggregator: lambda.Function, failures: sqs.Queue): void {
  NagSuppressions.addResourceSuppressions(failures, [
    {
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is itself the on-failure destination of the usage aggregator: it holds the stream positions of batches that could not be counted.',
    },
  ]);
  NagSuppressions.addResourceSuppressions(
    aggregator.role as iam.IRole,
    [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'The event source mapping reads the table stream: dynamodb:ListStreams cannot be scoped to a resource (CDK grantStreamRead); every other action is on this table only.',
        appliesTo: ['Resource::*'],
      },
    ],
    true,
  );
}
