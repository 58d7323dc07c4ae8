/**
 * Alarms (5xx rate, p99 latency, function errors and throttles, aggregator lag and failed
 * batches, table throttles and system errors), a dashboard (decisions, denials by limit, latency,
 * spend, capacity), the metric filters that count acquire's decisions from its log, and
 * Contributor Insights rules over that log. Metric names and log messages come from the
 * handlers' own lists, so what the dashboard shows is what they write.
 */

import { createHash } from 'node:crypto';
import { DECISION_LOG, METRICS } from '@sluice/lambdas/metric-names';
import type { FunctionName, StreamFunctionName } from '@sluice/lambdas/routes';
import { Duration, Stack } from 'aws-cdk-lib';
import type { HttpStage } from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';

/** What is watched. */
export interface Watched {
  readonly stage: HttpStage;
  readonly table: dynamodb.Table;
  readonly functions: ReadonlyMap<FunctionName | StreamFunctionName, lambda.IFunction>;
  readonly aggregator: lambda.IFunction;
  readonly aggregatorFailures: sqs.IQueue;
  readonly service: string;
}

/**
 * What the construct's named resources (dashboard, Contributor Insights rules) start with: its
 * stack's name, then its path in the stack unless that is `Sluice` (SluiceStack's): the names are
 * the account's, so two constructs in one stack must not share them.
 */
export function physicalPrefix(scope: Construct): string {
  const stack = Stack.of(scope);
  const path = scope.node.scopes.slice(scope.node.scopes.indexOf(stack) + 1);
  const ids = path.map((construct) => construct.node.id);
  if (ids.length === 1 && ids[0] === 'Sluice') return stack.stackName;
  return `${stack.stackName}-${ids.join('-').replace(/[^A-Za-z0-9_-]/g, '-')}`;
}

/**
 * The account-wide name of one of the construct's resources: {@link physicalPrefix}, then
 * `suffix`, at most `max` characters (a dashboard's 255, a Contributor Insights rule's 128). A
 * longer one keeps the start of the prefix and the whole suffix, with a digest of the full name
 * between them, so that names cut alike stay apart.
 */
export function physicalName(scope: Construct, suffix: string, max: number): string {
  const full = `${physicalPrefix(scope)}-${suffix}`;
  if (full.length <= max) return full;
  const digest = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${full.slice(0, max - suffix.length - digest.length - 2)}-${digest}-${suffix}`;
}

/** Adds one alarm: at or above `threshold` in 2 of 3 periods. */
type AddAlarm = (
  id: string,
  metric: cloudwatch.IMetric,
  threshold: number,
  description: string,
) => void;

/** The alarms; each notifies `topic` when there is one. */
export function sluiceAlarms(
  scope: Construct,
  watched: Watched,
  topic: sns.ITopic | undefined,
): cloudwatch.Alarm[] {
  const alarms: cloudwatch.Alarm[] = [];
  const add: AddAlarm = (id, metric, threshold, description) => {
    const alarm = new cloudwatch.Alarm(scope, id, {
      metric,
      threshold,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    if (topic) alarm.addAlarmAction(new SnsAction(topic));
    alarms.push(alarm);
  };
  const period = Duration.minutes(1);
  apiAlarms(add, watched.stage, period);
  functionAlarms(add, watched.functions, period);
  aggregatorAlarms(add, watched, period);
  tableAlarms(add, watched.table, period);
  return alarms;
}

/** The API's: its 5xx rate and its p99 latency. */
function apiAlarms(add: AddAlarm, stage: HttpStage, period: Duration): void {
  add(
    'ServerErrorRate',
    new cloudwatch.MathExpression({
      expression: '100 * errors / MAX([errors, requests])',
      usingMetrics: {
        errors: stage.metricServerError({ period }),
        requests: stage.metricCount({ period }),
      },
      period,
      label: '5xx %',
    }),
    1,
    'More than 1% of API requests answered 5xx',
  );
  add(
    'LatencyP99',
    stage.metricLatency({ period, statistic: 'p99' }),
    500,
    'p99 API latency at or above 500 ms',
  );
}

/** Each function's: it threw, or was throttled. */
function functionAlarms(add: AddAlarm, functions: Watched['functions'], period: Duration): void {
  for (const [name, fn] of functions) {
    add(`${name}-errors`, fn.metricErrors({ period }), 1, `The ${name} function threw`);
    add(
      `${name}-throttles`,
      fn.metricThrottles({ period }),
      1,
      `The ${name} function was throttled`,
    );
  }
}

/** The aggregator's: it lags behind the stream, or gave up on a batch. */
function aggregatorAlarms(add: AddAlarm, watched: Watched, period: Duration): void {
  add(
    'AggregatorIteratorAge',
    watched.aggregator.metric('IteratorAge', { period, statistic: 'Maximum' }),
    60_000,
    'Usage history is more than a minute behind the table (the aggregator lags or keeps failing)',
  );
  add(
    'AggregatorFailedBatches',
    watched.aggregatorFailures.metricApproximateNumberOfMessagesVisible({ period }),
    1,
    'A stream batch could not be counted into usage history after every retry',
  );
}

/** The table's: throttled requests and system errors on the operations the functions use. */
function tableAlarms(add: AddAlarm, table: dynamodb.Table, period: Duration): void {
  const operations = [
    dynamodb.Operation.UPDATE_ITEM,
    dynamodb.Operation.GET_ITEM,
    dynamodb.Operation.BATCH_GET_ITEM,
    dynamodb.Operation.TRANSACT_WRITE_ITEMS,
  ];
  add(
    'TableThrottles',
    table.metricThrottledRequestsForOperations({ operations, period }),
    1,
    'DynamoDB throttled requests to the Sluice table',
  );
  add(
    'TableSystemErrors',
    table.metricSystemErrorsForOperations({ operations, period }),
    1,
    'DynamoDB system errors on the Sluice table',
  );
}

/** The dashboard. */
export function sluiceDashboard(scope: Construct, watched: Watched): cloudwatch.Dashboard {
  const { stage, table, service } = watched;
  const sluiceMetric = (metricName: string, statistic = 'Sum') =>
    new cloudwatch.Metric({
      namespace: METRICS.namespace,
      metricName,
      dimensionsMap: { [METRICS.serviceDimension]: service },
      statistic,
      period: Duration.minutes(1),
    });
  const { namespace, limitDimension, serviceDimension, denialsByLimit } = METRICS;
  const acquire = watched.functions.get('acquire');
  const dashboard = new cloudwatch.Dashboard(scope, 'Dashboard', {
    dashboardName: physicalName(scope, 'sluice', 255),
  });
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Decisions and denials',
      left: [sluiceMetric(METRICS.decisions), sluiceMetric(METRICS.denials)],
      width: 12,
    }),
    new cloudwatch.GraphWidget({
      title: 'Denials by limit',
      left: [
        new cloudwatch.MathExpression({
          expression: `SEARCH('{${namespace},${limitDimension},${serviceDimension}} MetricName="${denialsByLimit}" ${serviceDimension}="${service}"', 'Sum', 60)`,
          label: '',
          period: Duration.minutes(1),
        }),
      ],
      width: 12,
    }),
    new cloudwatch.GraphWidget({
      title: 'Latency (ms)',
      left: [
        stage.metricLatency({ statistic: 'p50' }),
        stage.metricLatency({ statistic: 'p99' }),
        ...(acquire
          ? [acquire.metricDuration({ statistic: 'p99', label: 'acquire function p99' })]
          : []),
      ],
      width: 12,
    }),
    new cloudwatch.GraphWidget({
      title: 'Spend (USD, settled)',
      left: [
        new cloudwatch.MathExpression({
          expression: 'cost / 1000000',
          usingMetrics: { cost: sluiceMetric(METRICS.usageCost) },
          label: 'USD',
          period: Duration.minutes(1),
        }),
      ],
      width: 12,
    }),
    new cloudwatch.GraphWidget({
      title: 'Tokens and leases (settled)',
      left: [sluiceMetric(METRICS.usageTokens)],
      right: [sluiceMetric(METRICS.usageLeases)],
      width: 12,
    }),
    new cloudwatch.GraphWidget({
      title: 'Table capacity consumed',
      left: [table.metricConsumedWriteCapacityUnits(), table.metricConsumedReadCapacityUnits()],
      width: 12,
    }),
  );
  return dashboard;
}

/**
 * CloudWatch Contributor Insights rules over the acquire function's decision logs: the entities
 * refused most, and the entities asking for the most tokens.
 */
export function sluiceInsightRules(
  scope: Construct,
  acquireLogs: logs.ILogGroup,
): cloudwatch.CfnInsightRule[] {
  // The function's own log group (not /aws/lambda/<name>: each function is given its own).
  const logGroup = acquireLogs.logGroupName;
  const rule = (id: string, contribution: Record<string, unknown>) =>
    new cloudwatch.CfnInsightRule(scope, id, {
      ruleName: physicalName(scope, id, 128),
      ruleState: 'ENABLED',
      ruleBody: Stack.of(scope).toJsonString({
        Schema: { Name: 'CloudWatchLogRule', Version: 1 },
        LogGroupNames: [logGroup],
        LogFormat: 'JSON',
        Contribution: contribution,
        AggregateOn: contribution.ValueOf ? 'Sum' : 'Count',
      }),
    });
  return [
    rule('TopDenied', {
      Keys: ['$.entity'],
      Filters: [
        { Match: '$.message', In: [DECISION_LOG.decision] },
        { Match: '$.decision', In: ['rate_limited', 'exceeds_capacity'] },
      ],
    }),
    rule('TopTokens', {
      Keys: ['$.entity'],
      ValueOf: '$.tokens',
      Filters: [
        { Match: '$.message', In: [DECISION_LOG.decision] },
        { Match: '$.decision', In: ['allowed'] },
      ],
    }),
  ];
}

/**
 * Acquire's decision metrics, counted from its decision log by metric filters: `decisions`,
 * `denials`, and `denials_by_limit` with the limit's name as a dimension; each with the
 * `service` dimension, as the dashboard reads them.
 */
export function sluiceDecisionMetrics(
  scope: Construct,
  acquireLogs: logs.ILogGroup,
): logs.MetricFilter[] {
  const is = (field: string, op: '=' | '!=', value: string) =>
    logs.FilterPattern.stringValue(`$.${field}`, op, value);
  const service = { [METRICS.serviceDimension]: '$.service' };
  const filter = (
    id: string,
    metricName: string,
    filterPattern: logs.IFilterPattern,
    dimensions: Record<string, string>,
  ) =>
    new logs.MetricFilter(scope, id, {
      logGroup: acquireLogs,
      metricNamespace: METRICS.namespace,
      metricName,
      metricValue: '1',
      filterPattern,
      dimensions,
    });
  return [
    filter(
      'DecisionsMetric',
      METRICS.decisions,
      is('message', '=', DECISION_LOG.decision),
      service,
    ),
    filter(
      'DenialsMetric',
      METRICS.denials,
      logs.FilterPattern.all(
        is('message', '=', DECISION_LOG.decision),
        is('decision', '!=', 'allowed'),
      ),
      service,
    ),
    filter(
      'DenialsByLimitMetric',
      METRICS.denialsByLimit,
      is('message', '=', DECISION_LOG.refusedBy),
      {
        ...service,
        [METRICS.limitDimension]: '$.limit',
      },
    ),
  ];
}
