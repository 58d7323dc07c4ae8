/**
 * The Sluice construct: one DynamoDB table, one Lambda function per route of
 * `lambdas/routes.ts`, an HTTP API with IAM authorization on every route, alarms and a
 * dashboard. Embed it in any CDK app; `SluiceStack` is the ready-made stack around it.
 */
import { fileURLToPath } from 'node:url';
import { TABLE_SCHEMA } from '@sluice/core';
import { ACCESS, type FunctionName, functionsOf, type Route, routes } from '@sluice/lambdas/routes';
import { CfnOutput, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpMethod,
  HttpStage,
  LogGroupLogDestination,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

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
   * Powertools log level of the functions.
   * @default 'INFO'
   */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /**
   * Service name in logs and metrics.
   * @default 'sluice'
   */
  readonly serviceName?: string;
  /**
   * How long a function container reuses stored configuration (plans, entities, resources,
   * settings) it has read: a change takes effect everywhere within this time.
   * @default Duration.seconds(30)
   */
  readonly configCache?: Duration;
  /**
   * How long admin audit entries are kept (DynamoDB TTL).
   * @default 90 days
   */
  readonly auditRetentionDays?: number;
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
  readonly functions: ReadonlyMap<FunctionName, NodejsFunction>;
  readonly alarms: readonly cloudwatch.Alarm[];
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarmTopic: sns.ITopic | undefined;

  constructor(scope: Construct, id: string, props: SluiceProps = {}) {
    super(scope, id);
    const service = props.serviceName ?? 'sluice';
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE_SCHEMA.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_SCHEMA.sortKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: TABLE_SCHEMA.ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
      deletionProtection: props.deletionProtection ?? true,
      removalPolicy: props.tableRemovalPolicy ?? RemovalPolicy.RETAIN,
      ...(props.tableEncryptionKey
        ? {
            encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryptionKey: props.tableEncryptionKey,
          }
        : {}),
    });

    const functions = new Map<FunctionName, NodejsFunction>();
    for (const [name, served] of functionsOf(routes))
      functions.set(name, this.#function(name, served[0] as Route, service, retention, props));
    this.functions = functions;

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
      const fn = functions.get(route.name) as NodejsFunction;
      integrations.set(
        route.name,
        integrations.get(route.name) ?? new HttpLambdaIntegration(`${route.name}-integration`, fn),
      );
      this.api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration: integrations.get(route.name) as HttpLambdaIntegration,
        authorizer,
      });
    }

    this.alarmTopic =
      props.alarmTopic ??
      (props.alarmEmail ? new sns.Topic(this, 'AlarmTopic', { enforceSSL: true }) : undefined);
    if (props.alarmEmail && !props.alarmTopic && this.alarmTopic instanceof sns.Topic) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    this.alarms = this.#alarms();
    this.dashboard = this.#dashboard(service);
  }

  /** The API's base URL. */
  get url(): string {
    return this.api.apiEndpoint;
  }

  /** Lets `principal` call the client routes: acquire, adjust, release, available, health. */
  grantAcquire(principal: iam.IGrantable): iam.Grant {
    return this.#grantInvoke(
      principal,
      routes.filter((r) => r.auth === 'client'),
    );
  }

  /** Lets `principal` call the admin routes: plans, entities, resources, settings, audit. */
  grantAdmin(principal: iam.IGrantable): iam.Grant {
    const grant = this.#grantInvoke(
      principal,
      routes.filter((r) => r.auth === 'admin'),
    );
    if (principal instanceof Construct) {
      NagSuppressions.addResourceSuppressions(
        principal,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'Sluice grantAdmin: each * stands in for a path parameter (a plan, entity or resource name) of an admin route, with its method fixed; no client route is granted.',
            appliesTo: [{ regex: '/^Resource::arn:.*:execute-api:.*/v1/admin/.*\\*.*$/' }],
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

  #function(
    name: FunctionName,
    route: Route,
    service: string,
    retention: logs.RetentionDays,
    props: SluiceProps,
  ): NodejsFunction {
    const logGroup = new logs.LogGroup(this, `${name}-logs`, {
      retention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Its own role, allowed to write its own log group: no managed policy with logs:* on every group.
    const role = new iam.Role(this, `${name}-role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Sluice ${name} function`,
    });
    logGroup.grantWrite(role);
    const fn = new NodejsFunction(this, `${name}-function`, {
      role,
      entry: fileURLToPath(route.entry),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 512,
      timeout: Duration.seconds(10),
      logGroup,
      ...(props.reservedConcurrency !== undefined
        ? { reservedConcurrentExecutions: props.reservedConcurrency }
        : {}),
      environment: {
        SLUICE_TABLE_NAME: this.table.tableName,
        SLUICE_SERVICE: service,
        SLUICE_CONFIG_CACHE_MS: String(
          (props.configCache ?? Duration.seconds(30)).toMilliseconds(),
        ),
        SLUICE_AUDIT_RETENTION_DAYS: String(props.auditRetentionDays ?? 90),
        POWERTOOLS_SERVICE_NAME: service,
        POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
        POWERTOOLS_METRICS_NAMESPACE: 'Sluice',
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: SLUICE_BUNDLING,
    });
    for (const access of ACCESS[name]) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: [...access.actions],
          resources: [this.table.tableArn],
          conditions: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...access.keys] },
          },
        }),
      );
    }
    if (props.tableEncryptionKey) props.tableEncryptionKey.grantEncryptDecrypt(fn);
    NagSuppressions.addResourceSuppressions(fn, [
      {
        id: 'AwsSolutions-L1',
        reason:
          'Node.js 22 is the runtime Sluice targets and whose bundles its tests load and run (test/infra); moving to a newer runtime means moving that test with it.',
      },
    ]);
    return fn;
  }

  #alarms(): cloudwatch.Alarm[] {
    const alarms: cloudwatch.Alarm[] = [];
    const add = (
      id: string,
      metric: cloudwatch.IMetric,
      threshold: number,
      description: string,
    ) => {
      const alarm = new cloudwatch.Alarm(this, id, {
        metric,
        threshold,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      if (this.alarmTopic) alarm.addAlarmAction(new SnsAction(this.alarmTopic));
      alarms.push(alarm);
    };
    const period = Duration.minutes(1);
    add(
      'ServerErrorRate',
      new cloudwatch.MathExpression({
        expression: '100 * errors / MAX([errors, requests])',
        usingMetrics: {
          errors: this.stage.metricServerError({ period }),
          requests: this.stage.metricCount({ period }),
        },
        period,
        label: '5xx %',
      }),
      1,
      'More than 1% of API requests answered 5xx',
    );
    add(
      'LatencyP99',
      this.stage.metricLatency({ period, statistic: 'p99' }),
      500,
      'p99 API latency at or above 500 ms',
    );
    for (const [name, fn] of this.functions) {
      add(`${name}-errors`, fn.metricErrors({ period }), 1, `The ${name} function threw`);
      add(
        `${name}-throttles`,
        fn.metricThrottles({ period }),
        1,
        `The ${name} function was throttled`,
      );
    }
    const operations = [
      dynamodb.Operation.UPDATE_ITEM,
      dynamodb.Operation.GET_ITEM,
      dynamodb.Operation.TRANSACT_WRITE_ITEMS,
    ];
    add(
      'TableThrottles',
      this.table.metricThrottledRequestsForOperations({ operations, period }),
      1,
      'DynamoDB throttled requests to the Sluice table',
    );
    add(
      'TableSystemErrors',
      this.table.metricSystemErrorsForOperations({ operations, period }),
      1,
      'DynamoDB system errors on the Sluice table',
    );
    return alarms;
  }

  #dashboard(service: string): cloudwatch.Dashboard {
    const sluiceMetric = (metricName: string, statistic = 'Sum') =>
      new cloudwatch.Metric({
        namespace: 'Sluice',
        metricName,
        dimensionsMap: { service },
        statistic,
        period: Duration.minutes(1),
      });
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${Stack.of(this).stackName}-sluice`,
    });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Decisions and denials',
        left: [sluiceMetric('decisions'), sluiceMetric('denials')],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Denials by limit',
        left: [
          new cloudwatch.MathExpression({
            expression: `SEARCH('{Sluice,limit,service} MetricName="denials_by_limit" service="${service}"', 'Sum', 60)`,
            label: '',
            period: Duration.minutes(1),
          }),
        ],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Latency (ms)',
        left: [
          this.stage.metricLatency({ statistic: 'p50' }),
          this.stage.metricLatency({ statistic: 'p99' }),
          sluiceMetric('latency', 'p99'),
        ],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Table capacity consumed',
        left: [
          this.table.metricConsumedWriteCapacityUnits(),
          this.table.metricConsumedReadCapacityUnits(),
        ],
        width: 12,
      }),
    );
    return dashboard;
  }
}

/**
 * How every function is bundled; a test bundles the acquire handler the same way.
 * The AWS SDK v3 is in the Node.js 22 runtime, so it stays out of the bundle.
 */
export const SLUICE_BUNDLING: BundlingOptions = {
  minify: true,
  sourceMap: true,
  target: 'node22',
  format: OutputFormat.ESM,
  mainFields: ['module', 'main'],
  externalModules: ['@aws-sdk/*'],
  banner:
    "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
};

/** The ready-made stack: `npx cdk deploy`. */
export class SluiceStack extends Stack {
  readonly sluice: Sluice;

  constructor(
    scope: Construct,
    id: string,
    props: SluiceProps & { readonly env?: { account?: string; region?: string } } = {},
  ) {
    super(scope, id, props.env ? { env: props.env } : {});
    this.sluice = new Sluice(this, 'Sluice', props);
    new CfnOutput(this, 'ApiUrl', { value: this.sluice.url, description: 'Sluice API base URL' });
    new CfnOutput(this, 'TableName', {
      value: this.sluice.table.tableName,
      description: 'Sluice DynamoDB table',
    });
  }
}
