/**
 * The Sluice construct: one DynamoDB table, one Lambda function per function of the route table,
 * an HTTP API with IAM authorization on every route, the usage aggregator on the table's stream,
 * alarms and a dashboard. Embed it in any CDK app; `SluiceStack` is the ready-made stack around
 * it. Its parts: table.ts, functions.ts, aggregator.ts, api.ts, monitoring.ts.
 */

import { SERVICE_DEFAULTS } from '@sluice/core/internal';
import { ACCESS, type FunctionName, functionsOf, type Route, routes } from '@sluice/lambdas/routes';
import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import type { HttpApi, HttpStage } from 'aws-cdk-lib/aws-apigatewayv2';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { sluiceAggregator } from './aggregator.js';
import { sluiceApi } from './api.js';
import { type FunctionOptions, sluiceFunction, tableAccess, tableStatements } from './functions.js';
import {
  sluiceAlarms,
  sluiceDashboard,
  sluiceDecisionMetrics,
  sluiceInsightRules,
  type Watched,
} from './monitoring.js';
import { checkProps } from './props.js';
import { sluiceTable, type TableOptions } from './table.js';

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
  /** The table's key, when it is one of yours. */
  readonly #encryptionKey: kms.IKey | undefined;

  constructor(scope: Construct, id: string, props: SluiceProps = {}) {
    super(scope, id);
    checkProps(props);
    this.#encryptionKey = props.tableEncryptionKey;
    const service = props.serviceName ?? SERVICE_DEFAULTS.serviceName;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    this.table = sluiceTable(this, tableOptions(props));
    const options = functionOptions(props, this.table, service, logRetention);
    this.functions = routeFunctions(this, options);

    const usage = sluiceAggregator(this, options, props.alertBus);
    this.aggregator = usage.aggregator;
    this.aggregatorFailures = usage.failures;
    this.alertBus = usage.alertBus;

    const { api, stage } = sluiceApi(this, this.functions, {
      logRetention,
      throttle: props.throttle ?? { rateLimit: 1_000, burstLimit: 2_000 },
    });
    this.api = api;
    this.stage = stage;

    this.alarmTopic = alarmTopic(this, props);
    const watched: Watched = {
      stage: this.stage,
      table: this.table,
      functions: new Map([...this.functions, ['aggregator', this.aggregator] as const]),
      aggregator: this.aggregator,
      aggregatorFailures: this.aggregatorFailures,
      service,
    };
    this.alarms = sluiceAlarms(this, watched, this.alarmTopic);
    this.dashboard = sluiceDashboard(this, watched);
    const acquireLogs = (this.functions.get('acquire') as lambda.Function).logGroup;
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

  /**
   * Lets `principal` (your own function) run Sluice in process (`@sluice/client/in-process`):
   * exactly the table access of the acquire, adjust and release functions together, item by
   * item (buckets, leases, signing keys, refusal counts; stored configuration read only), and
   * the table's key if it has one of yours. Nothing else: no admin write, no audit trail, no
   * usage history (read it over the API, `grantRead`).
   */
  grantInProcess(principal: iam.IGrantable): iam.Grant {
    const statements = tableStatements(tableAccess(IN_PROCESS), this.table.tableArn);
    const grants = statements
      .filter((statement) => statement.effect === iam.Effect.ALLOW)
      .map((statement) =>
        iam.Grant.addToPrincipal({
          grantee: principal,
          actions: statement.actions,
          resourceArns: statement.resources,
          conditions: statement.conditions,
        }),
      );
    for (const deny of statements.filter((statement) => statement.effect === iam.Effect.DENY))
      principal.grantPrincipal.addToPrincipalPolicy(deny);
    if (this.#encryptionKey) grants.push(this.#encryptionKey.grantEncryptDecrypt(principal));
    return grants.reduce((all, grant) => all.combine(grant));
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

/** The functions whose work an in-process client does in its caller's function. */
const IN_PROCESS: readonly FunctionName[] = ['acquire', 'adjust', 'release'];

/** What the table takes from the props. */
function tableOptions(props: SluiceProps): TableOptions {
  return {
    ...(props.tableRemovalPolicy ? { removalPolicy: props.tableRemovalPolicy } : {}),
    ...(props.deletionProtection !== undefined
      ? { deletionProtection: props.deletionProtection }
      : {}),
    ...(props.tableEncryptionKey ? { encryptionKey: props.tableEncryptionKey } : {}),
  };
}

/** What every function shares, from the props and their defaults. */
function functionOptions(
  props: SluiceProps,
  table: dynamodb.Table,
  service: string,
  logRetention: logs.RetentionDays,
): FunctionOptions {
  return {
    table,
    service,
    logRetention,
    logLevel: props.logLevel ?? 'INFO',
    configCache: props.configCache ?? Duration.millis(SERVICE_DEFAULTS.configCacheMs),
    auditRetentionDays: props.auditRetentionDays ?? SERVICE_DEFAULTS.auditRetentionDays,
    usageRetentionDays: props.usageRetentionDays ?? SERVICE_DEFAULTS.usageRetentionDays,
    ...(props.reservedConcurrency !== undefined
      ? { reservedConcurrency: props.reservedConcurrency }
      : {}),
    ...(props.tableEncryptionKey ? { encryptionKey: props.tableEncryptionKey } : {}),
  };
}

/** One function per function of the route table. */
function routeFunctions(
  scope: Construct,
  options: FunctionOptions,
): Map<FunctionName, lambda.Function> {
  const functions = new Map<FunctionName, lambda.Function>();
  for (const name of functionsOf(routes).keys()) {
    // Acquire's decision lines (INFO) are its metrics and insights: never quieter than INFO.
    const logLevel = name === 'acquire' && options.logLevel !== 'DEBUG' ? 'INFO' : options.logLevel;
    functions.set(name, sluiceFunction(scope, name, { ...options, logLevel }));
  }
  return functions;
}

/** The topic alarms notify: the one given, else a new one when an address is to be subscribed. */
function alarmTopic(scope: Construct, props: SluiceProps): sns.ITopic | undefined {
  const topic =
    props.alarmTopic ??
    (props.alarmEmail ? new sns.Topic(scope, 'AlarmTopic', { enforceSSL: true }) : undefined);
  if (props.alarmEmail && !props.alarmTopic && topic instanceof sns.Topic) {
    topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
  }
  return topic;
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
