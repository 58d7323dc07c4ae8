/**
 * The Sluice construct: one DynamoDB table, one Lambda function per function of the route table,
 * an HTTP API with IAM authorization on every route, alarms and a dashboard. Embed it in any CDK
 * app; `SluiceStack` is the ready-made stack around it. Its parts: table.ts, functions.ts,
 * monitoring.ts.
 */
import { SERVICE_DEFAULTS } from '@sluice/core';
import { AGGREGATOR_ENV } from '@sluice/lambdas/environment';
import { ACCESS, type FunctionName, functionsOf, type Route, routes } from '@sluice/lambdas/routes';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpMethod,
  HttpStage,
  LogGroupLogDestination,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { type FunctionOptions, sluiceFunction } from './functions.js';
import {
  sluiceAlarms,
  sluiceDashboard,
  sluiceDecisionMetrics,
  sluiceInsightRules,
} from './monitoring.js';
import { sluiceTable } from './table.js';

/** Options of the {@link Sluice} construct; every one has a secure default. */
export interface SluiceProps {
  /**
   * What happens to the table when the stack or construct is deleted.
   * @default RemovalPolicy.RETAIN
   */
  readonly tableRemovalPolicy?: RemovalPolicy;
  /**
   * Whether the table refuses deletion until this is turned off.
   * @default true
   */
  readonly deletionProtection?: boolean;
  /**
   * A customer-managed KMS key for the table.
   * @default the AWS-owned key
   */
  readonly tableEncryptionKey?: kms.IKey;
  /**
   * How long function and access logs are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Where alarms go. With `alarmEmail` and no topic, a topic is created.
   * @default no alarm actions (alarms still exist)
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * An email address subscribed to a new alarm topic (ignored when `alarmTopic` is set).
   * @default none
   */
  readonly alarmEmail?: string;
  /**
   * Reserved concurrency of each function (a ceiling on cost and on table load).
   * @default unreserved
   */
  readonly reservedConcurrency?: number;
  /**
   * Stage throttling: steady requests per second and burst across all routes.
   * @default { rateLimit: 1_000, burstLimit: 2_000 }
   */
  readonly throttle?: { readonly rateLimit: number; readonly burstLimit: number };
  /**
   * Powertools log level of the functions. The acquire function never logs less than INFO: its
   * decision lines are what its metrics (decisions, denials, denials by limit) and Contributor
   * Insights rules count.
   * @default 'INFO'
   */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /**
   * Service name in logs and metrics.
   * @default 'sluice' ({@link SERVICE_DEFAULTS.serviceName})
   */
  readonly serviceName?: string;
  /**
   * How long a function container reuses stored configuration (plans, entities, resources,
   * settings) it has read: a change takes effect everywhere within this time.
   * @default 30 seconds ({@link SERVICE_DEFAULTS.configCacheMs})
   */
  readonly configCache?: Duration;
  /**
   * How long admin audit entries are kept (DynamoDB TTL).
   * @default 90 days ({@link SERVICE_DEFAULTS.auditRetentionDays})
   */
  readonly auditRetentionDays?: number;
  /**
   * How long usage history is kept after each period ends (DynamoDB TTL).
   * @default 400 days ({@link SERVICE_DEFAULTS.usageRetentionDays})
   */
  readonly usageRetentionDays?: number;
  /**
   * Where budget alerts go (detail-type `Sluice Budget Threshold`).
   * @default a new event bus
   */
  readonly alertBus?: events.IEventBus;
}

/**
 * Sluice in a CDK app.
 *
 * @example
 * const sluice = new Sluice(this, 'Sluice', { alarmEmail: 'oncall@example.com' });
 * sluice.grantAcquire(myLlmFunction);
 * myLlmFunction.addEnvironment('SLUICE_URL', sluice.url);
 */
export class Sluice extends Construct {
  readonly table: dynamodb.Table;
  readonly api: HttpApi;
  readonly stage: HttpStage;
  readonly functions: ReadonlyMap<FunctionName, lambda.Function>;
  /** The usage aggregator, on the table's stream. */
  readonly aggregator: lambda.Function;
  /** Batches of the stream the aggregator could not count after its retries. */
  readonly aggregatorFailures: sqs.Queue;
  /** The EventBridge bus budget alerts are put on. */
  readonly alertBus: events.IEventBus;
  readonly alarms: readonly cloudwatch.Alarm[];
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarmTopic: sns.ITopic | undefined;

  constructor(scope: Construct, id: string, props: SluiceProps = {}) {
    super(scope, id);
    const service = props.serviceName ?? SERVICE_DEFAULTS.serviceName;
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    this.table = sluiceTable(this, {
      ...(props.tableRemovalPolicy ? { removalPolicy: props.tableRemovalPolicy } : {}),
      ...(props.deletionProtection !== undefined
        ? { deletionProtection: props.deletionProtection }
        : {}),
      ...(props.tableEncryptionKey ? { encryptionKey: props.tableEncryptionKey } : {}),
    });

    const functionOptions: FunctionOptions = {
      table: this.table,
      service,
      logRetention: retention,
      logLevel: props.logLevel ?? 'INFO',
      configCache: props.configCache ?? Duration.millis(SERVICE_DEFAULTS.configCacheMs),
      auditRetentionDays: props.auditRetentionDays ?? SERVICE_DEFAULTS.auditRetentionDays,
      usageRetentionDays: props.usageRetentionDays ?? SERVICE_DEFAULTS.usageRetentionDays,
      ...(props.reservedConcurrency !== undefined
        ? { reservedConcurrency: props.reservedConcurrency }
        : {}),
      ...(props.tableEncryptionKey ? { encryptionKey: props.tableEncryptionKey } : {}),
    };
    const functions = new Map<FunctionName, lambda.Function>();
    for (const name of functionsOf(routes).keys()) {
      // Acquire's decision lines (INFO) are its metrics and insights: never quieter than INFO.
      const logLevel =
        name === 'acquire' && functionOptions.logLevel !== 'DEBUG'
          ? 'INFO'
          : functionOptions.logLevel;
      functions.set(name, sluiceFunction(this, name, { ...functionOptions, logLevel }));
    }
    this.functions = functions;

    // Usage history and budget alerts: the aggregator on the table's stream.
    // (CDK's classes and interfaces disagree under exactOptionalPropertyTypes: hence the casts.)
    this.alertBus =
      props.alertBus ?? (new events.EventBus(this, 'AlertBus') as unknown as events.IEventBus);
    this.aggregator = sluiceFunction(this, 'aggregator', functionOptions, {
      timeout: Duration.seconds(60),
      environment: { [AGGREGATOR_ENV.eventBus]: this.alertBus.eventBusName },
    });
    this.alertBus.grantPutEventsTo(this.aggregator);
    this.aggregatorFailures = new sqs.Queue(this, 'AggregatorFailures', {
      enforceSSL: true,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      retentionPeriod: Duration.days(14),
    });
    NagSuppressions.addResourceSuppressions(this.aggregatorFailures, [
      {
        id: 'AwsSolutions-SQS3',
        reason:
          'This queue is itself the on-failure destination of the usage aggregator: it holds the stream positions of batches that could not be counted.',
      },
    ]);
    NagSuppressions.addResourceSuppressions(
      this.aggregator.role as iam.IRole,
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
    this.aggregator.addEventSource(
      new DynamoEventSource(this.table as unknown as dynamodb.ITable, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        // Up to 5 s of a stream in one batch: a lease's acquire and settlements that fall in one
        // batch are counted once, at their latest.
        maxBatchingWindow: Duration.seconds(5),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        retryAttempts: 10,
        onFailure: new SqsDlq(this.aggregatorFailures),
        // TTL deletions carry nothing to count.
        filters: [
          lambda.FilterCriteria.filter({ eventName: lambda.FilterRule.or('INSERT', 'MODIFY') }),
        ],
      }),
    );

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.api = new HttpApi(this, 'Api', {
      description: 'Sluice: rate limits and budgets for LLM calls',
      createDefaultStage: false,
    });
    this.stage = new HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttle ?? { rateLimit: 1_000, burstLimit: 2_000 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.jsonWithStandardFields(),
      },
    });
    const authorizer = new HttpIamAuthorizer();
    const integrations = new Map<string, HttpLambdaIntegration>();
    for (const route of routes) {
      const fn = functions.get(route.function) as lambda.Function;
      integrations.set(
        route.function,
        integrations.get(route.function) ??
          new HttpLambdaIntegration(`${route.function}-integration`, fn),
      );
      this.api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration: integrations.get(route.function) as HttpLambdaIntegration,
        authorizer,
      });
    }

    this.alarmTopic =
      props.alarmTopic ??
      (props.alarmEmail ? new sns.Topic(this, 'AlarmTopic', { enforceSSL: true }) : undefined);
    if (props.alarmEmail && !props.alarmTopic && this.alarmTopic instanceof sns.Topic) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    const watched = {
      stage: this.stage,
      table: this.table,
      functions: new Map([...functions, ['aggregator', this.aggregator] as const]),
      aggregator: this.aggregator,
      aggregatorFailures: this.aggregatorFailures,
      service,
    };
    this.alarms = sluiceAlarms(this, watched, this.alarmTopic);
    this.dashboard = sluiceDashboard(this, watched);
    const acquireLogs = (functions.get('acquire') as lambda.Function).logGroup;
    sluiceDecisionMetrics(this, acquireLogs);
    sluiceInsightRules(this, acquireLogs);
  }

  /** The API's base URL. */
  get url(): string {
    return this.api.apiEndpoint;
  }

  /** Lets `principal` call the client routes: acquire, adjust, release, available, usage, health. */
  grantAcquire(principal: iam.IGrantable): iam.Grant {
    return this.#grantInvoke(
      principal,
      routes.filter((r) => r.auth === 'client'),
    );
  }

  /**
   * Lets `principal` call the client routes that change nothing (available, usage, health):
   * for dashboards and reports. Read-only is what the route's own function may do to the table.
   */
  grantRead(principal: iam.IGrantable): iam.Grant {
    return this.#grantInvoke(
      principal,
      routes.filter((r) => r.auth === 'client' && readsOnly(r.function)),
    );
  }

  /** Lets `principal` call the admin routes: plans, entities, resources, settings, audit, top entities, alerts. */
  grantAdmin(principal: iam.IGrantable): iam.Grant {
    const admin = routes.filter((r) => r.auth === 'admin');
    const grant = this.#grantInvoke(principal, admin);
    if (principal instanceof Construct) {
      // What every admin path starts with, as a regular expression.
      const prefix = escapeRegExp(commonStart(admin.map((r) => r.path)));
      NagSuppressions.addResourceSuppressions(
        principal,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'Sluice grantAdmin: each * stands in for a path parameter (a plan, entity or resource name) of an admin route, with its method fixed; no client route is granted.',
            appliesTo: [{ regex: `/^Resource::arn:.*:execute-api:.*${prefix}.*\\*.*$/` }],
          },
        ],
        true,
      );
    }
    return grant;
  }

  #grantInvoke(principal: iam.IGrantable, granted: readonly Route[]): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee: principal,
      actions: ['execute-api:Invoke'],
      // IAM sees the request's real path, so each path parameter becomes a wildcard.
      resourceArns: granted.map((r) =>
        this.api.arnForExecuteApi(r.method, r.path.replace(/\{\w+\}/g, '*'), this.stage.stageName),
      ),
    });
  }
}

/** Whether a function's table access is reads only. */
function readsOnly(name: FunctionName): boolean {
  return ACCESS[name].every((access) =>
    access.actions.every((action) => /^dynamodb:(GetItem|BatchGetItem|Query)$/.test(action)),
  );
}

/** The longest start that all of `texts` share. */
function commonStart(texts: readonly string[]): string {
  let start = texts[0] ?? '';
  for (const text of texts) while (!text.startsWith(start)) start = start.slice(0, -1);
  return start;
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
