/**
 * aggregator: the usage aggregator on the table's stream (see core's usage/aggregator.ts). A
 * batch it cannot count is reported failed from its earliest record, so the stream delivers it
 * again (counting is idempotent); after the retries the event source mapping allows, the batch
 * goes to the on-failure destination. The event source mapping has a tumbling window for the
 * shard id it puts in each event (records are counted once by their shard and sequence number);
 * no state is kept across a window. Budget alerts go to the EventBridge bus named by
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

/** A batch of a stream whose event source mapping has a tumbling window: it names its shard. */
export type WindowedStreamEvent = DynamoDBStreamEvent & { readonly shardId?: string };

/** The answer a tumbling window requires: the window's state (none kept) with the failures. */
export type WindowedBatchResponse = DynamoDBBatchResponse & {
  readonly state: Record<string, never>;
};

export async function handler(event: WindowedStreamEvent): Promise<WindowedBatchResponse> {
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
  const { shardId } = event;
  try {
    if (shardId === undefined && event.Records.length > 0)
      throw new Error('the event names no shard: the event source mapping needs a tumbling window');
    const changes = event.Records.flatMap((r) => changeOf(r as StreamRecord, shardId) ?? []);
    const report = await aggregator.apply(changes);
    await progress.counted(changes, oldestRecordMs(event));
    logger.info('usage counted', { ...report, records: event.Records.length });
    if (report.expired > 0)
      logger.warn('usage records older than the stream keeps them were not counted', {
        expired: report.expired,
      });
    if (report.setAside.length > 0)
      logger.warn('usage DynamoDB refused to count in full (left out)', {
        setAside: report.setAside,
      });
    if (report.unplaced.length > 0)
      logger.warn('usage records whose context no row can hold (not counted)', {
        unplaced: report.unplaced,
      });
    const { usage, leases } = report.counted;
    metrics.addMetric(METRICS.usageTokens, MetricUnit.Count, usage.tokens ?? 0);
    metrics.addMetric(METRICS.usageCost, MetricUnit.Count, usage.cost_micro_usd ?? 0);
    metrics.addMetric(METRICS.usageLeases, MetricUnit.Count, leases);
    metrics.publishStoredMetrics();
    return { batchItemFailures: [], state: {} };
  } catch (error) {
    logger.error('usage batch not counted; it will be delivered again', { error });
    await progress.failed(error);
    // The lowest sequence number, wherever it is in the batch: Lambda reads again from there.
    const first = event.Records.flatMap((r) => r.dynamodb?.SequenceNumber ?? []).sort(
      (a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0),
    )[0];
    return { batchItemFailures: first ? [{ itemIdentifier: first }] : [], state: {} };
  }
}
