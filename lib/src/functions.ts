/**
 * One Lambda function per `function` of the route table: its bundle, its own role and log group,
 * its environment, and exactly the table access the route table's ACCESS entry names (its reads
 * also as one BatchGetItem: {@link batchReads}).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ADMIN_ENV, AGGREGATOR_ENV, ENV, POWERTOOLS_ENV } from '@sluice/lambdas/environment';
import { METRICS } from '@sluice/lambdas/metric-names';
import { ACCESS, type FunctionName, type StreamFunctionName } from '@sluice/lambdas/routes';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';

/**
 * Where the handlers' bundles are: built with the package (`npm run build`), shipped in its
 * `handlers/` folder, one folder per function holding `index.mjs` and its source map.
 */
export const HANDLERS_DIR = new URL('../handlers/', import.meta.url);

/** The folder of `name`'s bundle; a clear error when the package was not built. */
export function handlerCode(name: FunctionName | StreamFunctionName): string {
  const dir = fileURLToPath(new URL(`${name}/`, HANDLERS_DIR));
  if (!existsSync(`${dir}index.mjs`)) {
    throw new Error(
      `Sluice: no bundle for the ${name} function in ${dir}; in Sluice's own repository, run \`npm run build\` first`,
    );
  }
  return dir;
}

/** A grant of some actions on the table's items of some partition keys. */
export interface KeyedAccess {
  readonly actions: readonly string[];
  readonly keys: readonly string[];
  /** Partition keys `keys` match that are left out (an explicit Deny). */
  readonly except?: readonly string[];
}

/**
 * The store reads the items asked for in one turn together, in one BatchGetItem
 * (`DynamoDBStore.get`): a role may read so every item it may read alone (`GetItem`), and no
 * other. One statement names all of them, since IAM checks a batch's partition keys (its
 * `dynamodb:LeadingKeys`) against each statement as a whole: with one per grant, a batch of the
 * configuration and the signing keys (a new acquire container's first read) would be refused.
 */
function batchReads(accesses: readonly KeyedAccess[]): KeyedAccess {
  const reads = accesses.filter((access) => access.actions.includes('dynamodb:GetItem'));
  const except = [...new Set(reads.flatMap((access) => access.except ?? []))];
  return {
    actions: reads.length > 0 ? ['dynamodb:BatchGetItem'] : [],
    keys: [...new Set(reads.flatMap((access) => access.keys))],
    ...(except.length > 0 ? { except } : {}),
  };
}

/**
 * What a role that does the work of `names` may do to the table: their ACCESS entries (each
 * once) and, in one statement, a batch of every item they may read alone.
 */
export function tableAccess(
  names: readonly (FunctionName | StreamFunctionName)[],
): readonly KeyedAccess[] {
  const accesses = [...new Set(names.flatMap((name) => ACCESS[name]))];
  return [...accesses, batchReads(accesses)].filter((access) => access.actions.length > 0);
}

/** The conditions that keep a statement to the items of `keys` (their partition keys). */
export const leadingKeys = (keys: readonly string[]) => ({
  'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...keys] },
});

/**
 * The statements of `accesses` on `tableArn`: each grant held to its partition keys, and for a
 * grant with `except`, a Deny of those exact keys (a literal `*` in a key is one IAM's
 * `StringLike` would take for a wildcard).
 */
export function tableStatements(
  accesses: readonly KeyedAccess[],
  tableArn: string,
): iam.PolicyStatement[] {
  return accesses.flatMap(({ actions, keys, except = [] }) => [
    new iam.PolicyStatement({
      actions: [...actions],
      resources: [tableArn],
      conditions: leadingKeys(keys),
    }),
    ...(except.length > 0
      ? [
          new iam.PolicyStatement({
            effect: iam.Effect.DENY,
            actions: [...actions],
            resources: [tableArn],
            conditions: { 'ForAnyValue:StringEquals': { 'dynamodb:LeadingKeys': [...except] } },
          }),
        ]
      : []),
  ]);
}

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

/** The function `name`, from its bundle. */
export function sluiceFunction(
  scope: Construct,
  name: FunctionName | StreamFunctionName,
  options: FunctionOptions,
  extra: { readonly timeout?: Duration; readonly environment?: Record<string, string> } = {},
): lambda.Function {
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
  const fn = new lambda.Function(scope, `${name}-function`, {
    role,
    code: lambda.Code.fromAsset(handlerCode(name)),
    handler: 'index.handler',
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
      [ADMIN_ENV.auditRetentionDays]: String(options.auditRetentionDays),
      [AGGREGATOR_ENV.usageRetentionDays]: String(options.usageRetentionDays),
      ...extra.environment,
      [POWERTOOLS_ENV.service]: options.service,
      [POWERTOOLS_ENV.logLevel]: options.logLevel,
      [POWERTOOLS_ENV.namespace]: METRICS.namespace,
      NODE_OPTIONS: '--enable-source-maps',
    },
  });
  for (const statement of tableStatements(tableAccess([name]), options.table.tableArn))
    fn.addToRolePolicy(statement);
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
