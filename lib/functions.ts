/**
 * One Lambda function per `function` of the route table: bundled with esbuild, its own role and
 * log group, its environment, and exactly the table access the route table's ACCESS entry names.
 */
import { fileURLToPath } from 'node:url';
import { ENV, POWERTOOLS_ENV } from '@sluice/lambdas/environment';
import { METRICS } from '@sluice/lambdas/metric-names';
import { ACCESS, type FunctionName, type StreamFunctionName } from '@sluice/lambdas/routes';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';

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

/** What every function shares. */
export interface FunctionOptions {
  readonly table: dynamodb.Table;
  readonly service: string;
  readonly logRetention: logs.RetentionDays;
  readonly logLevel: string;
  readonly configCache: Duration;
  readonly auditRetentionDays: number;
  readonly usageRetentionDays: number;
  readonly reservedConcurrency?: number;
  readonly encryptionKey?: kms.IKey;
}

/** The function `name`, built from `entry` (the route table's, or the aggregator's). */
export function sluiceFunction(
  scope: Construct,
  name: FunctionName | StreamFunctionName,
  entry: URL,
  options: FunctionOptions,
  extra: { readonly timeout?: Duration; readonly environment?: Record<string, string> } = {},
): NodejsFunction {
  const logGroup = new logs.LogGroup(scope, `${name}-logs`, {
    retention: options.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  // Its own role, allowed to write its own log group: no managed policy with logs:* on every group.
  const role = new iam.Role(scope, `${name}-role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Sluice ${name} function`,
  });
  logGroup.grantWrite(role);
  const fn = new NodejsFunction(scope, `${name}-function`, {
    role,
    entry: fileURLToPath(entry),
    handler: 'handler',
    runtime: lambda.Runtime.NODEJS_22_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: 512,
    timeout: extra.timeout ?? Duration.seconds(10),
    logGroup,
    ...(options.reservedConcurrency !== undefined
      ? { reservedConcurrentExecutions: options.reservedConcurrency }
      : {}),
    environment: {
      [ENV.tableName]: options.table.tableName,
      [ENV.service]: options.service,
      [ENV.configCacheMs]: String(options.configCache.toMilliseconds()),
      [ENV.auditRetentionDays]: String(options.auditRetentionDays),
      [ENV.usageRetentionDays]: String(options.usageRetentionDays),
      ...extra.environment,
      [POWERTOOLS_ENV.service]: options.service,
      [POWERTOOLS_ENV.logLevel]: options.logLevel,
      [POWERTOOLS_ENV.namespace]: METRICS.namespace,
      NODE_OPTIONS: '--enable-source-maps',
    },
    bundling: SLUICE_BUNDLING,
  });
  for (const access of ACCESS[name]) {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [...access.actions],
        resources: [options.table.tableArn],
        conditions: {
          'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...access.keys] },
        },
      }),
    );
  }
  if (options.encryptionKey) options.encryptionKey.grantEncryptDecrypt(fn);
  NagSuppressions.addResourceSuppressions(fn, [
    {
      id: 'AwsSolutions-L1',
      reason:
        'Node.js 22 is the runtime Sluice targets and whose bundles its tests load and run (test/infra); moving to a newer runtime means moving that test with it.',
    },
  ]);
  return fn;
}
