/**
 * aggregator: the usage aggregator on the table's stream (see core's usage/aggregator.ts). A
 * batch it cannot count is reported failed from its first record, so the stream delivers it
 * again (counting is idempotent); after the retries the event source mapping allows, the batch
 * goes to the on-failure destination. Budget alerts go to the EventBridge bus named by
 * SLUICE_EVENT_BUS. Each batch counted (or failed) is recorded in the progress item the health
 * check reads: when, how old its oldest record was, or since when counting has been failing.
 */

import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { changeOf, DynamoDBAdminStore, UsageAggregator } from '@sluice/core';
import {
  ALERT_EVENT,
  type AlertSender,
  type StreamRecord,
  UsageProgress,
} from '@sluice/core/internal';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { aggregatorEnvironment } from './environment.js';
import { METRICS } from './metric-names.js';
import { metrics } from './metrics.js';
import { getRuntime, logger } from './runtime.js';

let aggregator: UsageAggregator | undefined;
let progress: UsageProgress | undefined;

/** The time the batch's oldest record gives (the stream's `ApproximateCreationDateTime`, in s). */
function oldestRecordMs(event: DynamoDBStreamEvent): number | undefined {
  const times = event.Records.flatMap((r) => r.dynamodb?.ApproximateCreationDateTime ?? []);
  return times.length > 0 ? Math.min(...times) * 1_000 : undefined;
}

function eventBridgeSender(busName: string): AlertSender {
  const events = new EventBridgeClient({});
  return async (alert) => {
    const out = await events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: busName,
            Source: ALERT_EVENT.source,
            DetailType: ALERT_EVENT.detailType,
            Detail: JSON.stringify(alert),
          },
        ],
      }),
    );
    if (out.FailedEntryCount)
      throw new Error(`EventBridge refused the alert: ${out.Entries?.[0]?.ErrorCode}`);
  };
}

export async function handler(event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> {
  const runtime = getRuntime();
  const { usageRetentionDays, eventBus } = aggregatorEnvironment();
  aggregator ??= new UsageAggregator({
    store: new DynamoDBAdminStore({ client: runtime.client, tableName: runtime.env.tableName }),
    retentionDays: usageRetentionDays,
    ...(eventBus ? { sendAlert: eventBridgeSender(eventBus) } : {}),
    onSendFailure: 'retry',
  });
  progress ??= new UsageProgress({
    store: runtime.store,
    onError: (error) => logger.warn('usage progress not recorded (for health)', { error }),
  });
  const changes = event.Records.flatMap((r) => changeOf(r as StreamRecord) ?? []);
  try {
    const report = await aggregator.apply(changes);
    await progress.counted(changes, oldestRecordMs(event));
    logger.info('usage counted', { records: event.Records.length, ...report });
    if (report.setAside.length > 0)
      logger.warn('usage DynamoDB refused to count in full (left out)', {
        setAside: report.setAside,
      });
    const { usage, leases } = report.counted;
    metrics.addMetric(METRICS.usageTokens, MetricUnit.Count, usage.tokens ?? 0);
    metrics.addMetric(METRICS.usageCost, MetricUnit.Count, usage.cost_micro_usd ?? 0);
    metrics.addMetric(METRICS.usageLeases, MetricUnit.Count, leases);
    metrics.publishStoredMetrics();
    return { batchItemFailures: [] };
  } catch (error) {
    logger.error('usage batch not counted; it will be delivered again', { error });
    await progress.failed(error);
    const first = event.Records[0]?.dynamodb?.SequenceNumber;
    return { batchItemFailures: first ? [{ itemIdentifier: first }] : [] };
  }
}
