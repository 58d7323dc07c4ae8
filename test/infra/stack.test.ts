import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SluiceStack } from '@sluice/cdk';
import { ensureTable } from '@sluice/core';
import { type FunctionName, functionsOf, routes } from '@sluice/lambdas/routes';
import { localClient } from '@sluice/local';
import { App, Aspects, type CfnElement } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { post, startApi } from '../support/api.js';
import { keysRead, startRecorder } from '../support/iam-proxy.js';
import { node22 } from '../support/node22.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Inside the repo, so a bundle's external @aws-sdk/* resolves from node_modules as Lambda's runtime provides it.
const OUT = join(ROOT, 'cdk.out', `test-${randomBytes(4).toString('hex')}`);

function synth(outdir: string, props: ConstructorParameters<typeof SluiceStack>[2] = {}) {
  const app = new App({ outdir });
  const stack = new SluiceStack(app, 'Sluice', props);
  const consumer = new iam.Role(stack, 'Consumer', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
  });
  stack.sluice.grantAcquire(consumer);
  const admin = new iam.Role(stack, 'Admin', { assumedBy: new iam.AccountRootPrincipal() });
  stack.sluice.grantAdmin(admin);
  const reader = new iam.Role(stack, 'Reader', { assumedBy: new iam.AccountRootPrincipal() });
  stack.sluice.grantRead(reader);
  Aspects.of(app).add(new AwsSolutionsChecks());
  const assembly = app.synth();
  return { stack, template: Template.fromStack(stack), assembly };
}

let built: ReturnType<typeof synth>;
beforeAll(() => {
  mkdirSync(OUT, { recursive: true });
  built = synth(OUT, { alarmEmail: 'oncall@example.com' });
});
afterAll(() => rmSync(OUT, { recursive: true, force: true }));

/** The logical id of a construct's CloudFormation resource. */
const idOf = (construct: { node: { defaultChild?: unknown } } | undefined): string => {
  const child = construct?.node.defaultChild;
  if (!child) throw new Error('no such construct');
  return built.stack.getLogicalId(child as CfnElement);
};
const fnOf = (route: FunctionName) => built.stack.sluice.functions.get(route);

describe('the table', () => {
  it('has the schema from @sluice/core, TTL, PITR, a stream and on-demand billing', () => {
    built.template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      BillingMode: 'PAY_PER_REQUEST',
      StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
      DeletionProtectionEnabled: true,
    });
  });

  it('is retained when the stack goes', () => {
    built.template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('has no global secondary index', () => {
    const [table] = Object.values(built.template.findResources('AWS::DynamoDB::Table'));
    expect(
      (table as { Properties: Record<string, unknown> }).Properties.GlobalSecondaryIndexes,
    ).toBeUndefined();
  });
});

describe('the API', () => {
  it('has every route of lambdas/routes.ts, each behind IAM authorization', () => {
    const apiRoutes = Object.values(built.template.findResources('AWS::ApiGatewayV2::Route')) as {
      Properties: { RouteKey: string; AuthorizationType: string };
    }[];
    expect(apiRoutes.map((r) => r.Properties.RouteKey).sort()).toEqual(
      routes.map((r) => `${r.method} ${r.path}`).sort(),
    );
    expect(apiRoutes.every((r) => r.Properties.AuthorizationType === 'AWS_IAM')).toBe(true);
  });

  it('throttles and logs the stage', () => {
    built.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      DefaultRouteSettings: { ThrottlingRateLimit: 1_000, ThrottlingBurstLimit: 2_000 },
      AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }),
    });
  });

  it('outputs the API URL, the table name and the alert bus', () => {
    built.template.hasOutput('ApiUrl', {});
    built.template.hasOutput('TableName', {});
    built.template.hasOutput('AlertBusName', {});
  });

  it('lets a consumer granted with grantAcquire invoke the client routes only', () => {
    const consumer = built.stack.node.findChild('Consumer') as iam.Role;
    const policies = built.template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: idOf(consumer) }] },
    });
    const statements = Object.values(policies).flatMap(
      (p) =>
        (
          p as {
            Properties: {
              PolicyDocument: { Statement: { Action: string; Resource: unknown[] }[] };
            };
          }
        ).Properties.PolicyDocument.Statement,
    );
    expect(statements.map((s) => s.Action)).toEqual(['execute-api:Invoke']);
    expect(JSON.stringify(statements[0]?.Resource)).not.toContain('/v1/admin');
    expect(statements[0]?.Resource).toHaveLength(routes.filter((r) => r.auth === 'client').length);
  });

  it('lets a principal granted with grantRead invoke the client routes that change nothing', () => {
    const reader = built.stack.node.findChild('Reader') as iam.Role;
    const text = JSON.stringify(
      built.template.findResources('AWS::IAM::Policy', {
        Properties: { Roles: [{ Ref: idOf(reader) }] },
      }),
    );
    const granted = [...text.matchAll(/\/(GET|POST)(\/v1\/[a-z/]+)/g)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    expect(granted.sort()).toEqual(['GET /v1/health', 'GET /v1/usage', 'POST /v1/available']);
  });

  it('lets a principal granted with grantAdmin invoke exactly the admin routes', () => {
    const admin = built.stack.node.findChild('Admin') as iam.Role;
    const text = JSON.stringify(
      built.template.findResources('AWS::IAM::Policy', {
        Properties: { Roles: [{ Ref: idOf(admin) }] },
      }),
    );
    expect(text).toContain('/PUT/v1/admin/plans/*');
    expect(text).toContain('/POST/v1/admin/entities/*/reset');
    expect(text).not.toContain('/v1/acquire');
  });
});

describe('the functions', () => {
  it('run Node.js 22 on ARM64, one per handler (the admin routes share one) and the aggregator', () => {
    const functions = Object.values(built.template.findResources('AWS::Lambda::Function')) as {
      Properties: { Runtime: string; Architectures: string[] };
    }[];
    expect(functions).toHaveLength(functionsOf(routes).size + 1);
    expect(functionsOf(routes).get('admin')?.length).toBeGreaterThan(10);
    for (const fn of functions) {
      expect(fn.Properties.Runtime).toBe('nodejs22.x');
      expect(fn.Properties.Architectures).toEqual(['arm64']);
    }
  });

  function dynamoStatements(route: FunctionName) {
    const role = idOf(fnOf(route)?.role as iam.Role);
    const policies = built.template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: role }] },
    });
    return Object.values(policies)
      .flatMap(
        (p) =>
          (
            p as {
              Properties: {
                PolicyDocument: {
                  Statement: {
                    Action: string | string[];
                    Resource: unknown;
                    Condition?: unknown;
                  }[];
                };
              };
            }
          ).Properties.PolicyDocument.Statement,
      )
      .filter((s) => [s.Action].flat().some((a) => a.startsWith('dynamodb:')));
  }

  it('let acquire only get, update and condition-check items of this table, each statement held to key prefixes', () => {
    const statements = dynamoStatements('acquire');
    const table = idOf(built.stack.sluice.table);
    expect([...new Set(statements.flatMap((s) => [s.Action].flat()))].sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:ConditionCheckItem',
      'dynamodb:GetItem',
      'dynamodb:UpdateItem',
    ]);
    // A condition check only on buckets: never on configuration, leases or the audit trail.
    const checks = statements.filter((s) =>
      [s.Action].flat().includes('dynamodb:ConditionCheckItem'),
    );
    expect(JSON.stringify(checks.map((s) => s.Condition))).not.toMatch(/config#|lease#|audit/);
    for (const statement of statements) {
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [table, 'Arn'] });
      expect(JSON.stringify(statement.Condition)).toContain('dynamodb:LeadingKeys');
    }
  });

  it('keep the lease signing key from available and health', () => {
    for (const route of ['available', 'health'] as const) {
      const statements = dynamoStatements(route);
      expect(statements.flatMap((s) => [s.Action].flat())).toEqual([
        'dynamodb:GetItem',
        'dynamodb:BatchGetItem',
      ]);
      for (const statement of statements) {
        expect(JSON.stringify(statement.Condition)).toContain('dynamodb:LeadingKeys');
        expect(JSON.stringify(statement.Condition)).not.toContain('meta#lease');
      }
    }
  });

  it('cache stored configuration for 30 s and keep audit entries 90 days by default', () => {
    built.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SLUICE_CONFIG_CACHE_MS: '30000',
          SLUICE_AUDIT_RETENTION_DAYS: '90',
        }),
      },
    });
  });

  it('let admin write configuration, append audit entries and reset buckets, never delete either', () => {
    const statements = dynamoStatements('admin');
    expect([...new Set(statements.flatMap((s) => [s.Action].flat()))].sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:ConditionCheckItem',
      'dynamodb:DeleteItem',
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
    ]);
    const deleting = statements.filter((s) => [s.Action].flat().includes('dynamodb:DeleteItem'));
    expect(deleting.map((s) => JSON.stringify(s.Condition))).toEqual([
      expect.stringContaining('"config#*"'),
    ]);
    expect(JSON.stringify(deleting[0]?.Condition)).not.toMatch(/audit|entity#/);
  });

  it('keep logs for a month by default', () => {
    const groups = Object.values(built.template.findResources('AWS::Logs::LogGroup')) as {
      Properties: { RetentionInDays: number };
    }[];
    expect(groups.length).toBeGreaterThanOrEqual(functionsOf(routes).size);
    expect(groups.every((g) => g.Properties.RetentionInDays === 30)).toBe(true);
  });
});

describe('the usage aggregator', () => {
  it('reads the table stream, reports failed records, retries, then sends the batch to a queue', () => {
    built.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 100,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      // The shard id in each event (rows count each record once by shard and sequence number),
      // and one batch of a shard at a time.
      TumblingWindowInSeconds: 900,
      ParallelizationFactor: 1,
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: 10,
      DestinationConfig: { OnFailure: { Destination: Match.anyValue() } },
      FilterCriteria: { Filters: [{ Pattern: Match.stringLikeRegexp('INSERT') }] },
    });
    built.template.resourceCountIs('AWS::SQS::Queue', 1);
  });

  it('puts budget alerts on its own event bus, and may do nothing else there', () => {
    built.template.resourceCountIs('AWS::Events::EventBus', 1);
    const policies = JSON.stringify(built.template.findResources('AWS::IAM::Policy'));
    expect(policies).toContain('events:PutEvents');
    const dashboards = JSON.stringify(built.template.findResources('AWS::CloudWatch::Dashboard'));
    for (const text of ['usage_cost_micro_usd', 'usage_tokens', 'Spend'])
      expect(dashboards).toContain(text);
    const rules = Object.values(built.template.findResources('AWS::CloudWatch::InsightRule'));
    expect(rules).toHaveLength(2);
  });
});

describe('alarms and dashboard', () => {
  it('alarm on 5xx rate, p99 latency, function errors and throttles, and table throttles and errors, to the topic', () => {
    // 5xx and p99; errors and throttles of each function and of the aggregator; its iterator age
    // and failed batches; table throttles and system errors.
    built.template.resourceCountIs(
      'AWS::CloudWatch::Alarm',
      2 + 2 * (functionsOf(routes).size + 1) + 2 + 2,
    );
    const alarms = Object.values(built.template.findResources('AWS::CloudWatch::Alarm')) as {
      Properties: { AlarmActions?: unknown[] };
    }[];
    expect(alarms.every((a) => (a.Properties.AlarmActions ?? []).length === 1)).toBe(true);
    // On every operation the functions send: the store's batched reads included.
    const table = alarms.filter((a) => /Sluice table/.test(JSON.stringify(a.Properties)));
    expect(table).toHaveLength(2);
    for (const alarm of table)
      for (const operation of ['UpdateItem', 'GetItem', 'BatchGetItem', 'TransactWriteItems'])
        expect(JSON.stringify(alarm.Properties)).toContain(`"${operation}"`);
    built.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'oncall@example.com',
    });
  });

  it('draw decisions, denials by limit, latency and consumed capacity', () => {
    const [dashboard] = Object.values(built.template.findResources('AWS::CloudWatch::Dashboard'));
    const body = JSON.stringify(
      (dashboard as { Properties: { DashboardBody: unknown } }).Properties.DashboardBody,
    );
    for (const text of ['decisions', 'denials_by_limit', 'Latency', 'ConsumedWriteCapacityUnits'])
      expect(body).toContain(text);
  });
});

describe('checks', () => {
  it('pass cdk-nag AwsSolutions with no unsuppressed error or warning', () => {
    const errors = Annotations.fromStack(built.stack).findError(
      '*',
      Match.stringLikeRegexp('AwsSolutions-.*'),
    );
    const warnings = Annotations.fromStack(built.stack).findWarning(
      '*',
      Match.stringLikeRegexp('AwsSolutions-.*'),
    );
    expect(errors.map((e) => `${e.id}: ${String(e.entry.data)}`)).toEqual([]);
    expect(warnings.map((e) => `${e.id}: ${String(e.entry.data)}`)).toEqual([]);
  });

  it('synthesize the same template twice', () => {
    // At the same depth as OUT: bundles carry source maps with paths relative to their folder,
    // so a folder elsewhere would change the asset hashes (cdk synth always uses ./cdk.out).
    const again = join(ROOT, 'cdk.out', `test-${randomBytes(4).toString('hex')}`);
    try {
      expect(synth(again, { alarmEmail: 'oncall@example.com' }).template.toJSON()).toEqual(
        built.template.toJSON(),
      );
    } finally {
      rmSync(again, { recursive: true, force: true });
    }
  });
});

/** The bundle's log lines when it ran (one admitted call, one refused by `tpm`). */
let decisionLog: Record<string, unknown>[] = [];

/**
 * Whether a log line matches a metric filter's JSON pattern, as CloudWatch reads the patterns
 * the construct writes: `{ $.a = "x" }` and `{ ($.a = "x") && ($.b != "y") }`.
 */
function matches(pattern: string, line: Record<string, unknown>): boolean {
  const terms = [...pattern.matchAll(/\$\.(\w+)\s*(!=|=)\s*"([^"]*)"/g)];
  if (terms.length === 0) throw new Error(`not a pattern this test reads: ${pattern}`);
  return terms.every(([, field, op, value]) => {
    const actual = line[field as string];
    if (typeof actual !== 'string') return false;
    return op === '=' ? actual === value : actual !== value;
  });
}

/** An acquire as API Gateway sends it to the function. */
const acquireEvent = (body: unknown) => ({
  version: '2.0',
  routeKey: 'POST /v1/acquire',
  rawPath: '/v1/acquire',
  rawQueryString: '',
  headers: { 'content-type': 'application/json' },
  requestContext: {
    http: {
      method: 'POST',
      path: '/v1/acquire',
      protocol: 'HTTP/1.1',
      sourceIp: '127.0.0.1',
      userAgent: 'test',
    },
    requestId: 'infra-test',
    routeKey: 'POST /v1/acquire',
    stage: '$default',
  },
  body: JSON.stringify(body),
  isBase64Encoded: false,
});

/**
 * The acquire bundle in `asset` run as Lambda runs it, in a new Node 22 process (`import()`, then
 * `handler(event, context)` for each of `events` in turn) on `table` at `endpoint`: outside the
 * repo, beside a node_modules holding only what Lambda's runtime provides (@aws-sdk/*), so a
 * package wrongly left out of the bundle fails here, not in AWS.
 */
async function runBundle(asset: string, table: string, endpoint: string, events: unknown[]) {
  const lambdaDir = mkdtempSync(join(tmpdir(), 'sluice-lambda-'));
  onTestFinished(() => rmSync(lambdaDir, { recursive: true, force: true }));
  const task = join(lambdaDir, 'task');
  cpSync(asset, task, { recursive: true });
  mkdirSync(join(lambdaDir, 'node_modules'));
  symlinkSync(join(ROOT, 'node_modules/@aws-sdk'), join(lambdaDir, 'node_modules/@aws-sdk'));
  const runner = join(lambdaDir, 'invoke.mjs');
  writeFileSync(
    runner,
    `import { pathToFileURL } from 'node:url';
const [dir, events] = process.argv.slice(2);
const { handler } = await import(pathToFileURL(dir + '/index.mjs').href);
const context = { awsRequestId: 'infra-test', functionName: 'acquire', getRemainingTimeInMillis: () => 10000 };
const results = [];
for (const event of JSON.parse(events)) results.push(await handler(event, context));
process.stdout.write('RESULT ' + JSON.stringify({ node: process.version, results }));`,
  );
  // Lambda's runtime is Node 22: never silently fall back to the Node running this test.
  const node = node22();
  // Not spawned synchronously: the DynamoDB it reaches may be a proxy this process serves.
  const child = spawn(node, [runner, task, JSON.stringify(events)], {
    env: {
      PATH: process.env.PATH,
      SLUICE_TABLE_NAME: table,
      SLUICE_DYNAMODB_ENDPOINT: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      POWERTOOLS_LOG_LEVEL: 'INFO', // its decision lines are checked
      POWERTOOLS_SERVICE_NAME: 'sluice',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      AWS_LAMBDA_FUNCTION_NAME: 'acquire', // as Lambda sets it: the init reads ahead
    },
    timeout: 30_000,
  });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (status !== 0) throw new Error(`the bundle failed under ${node}: ${stderr}`);
  const lines = stdout.split('\n');
  const resultLine = lines.find((line) => line.startsWith('RESULT ')) ?? '';
  const { node: version, results } = JSON.parse(resultLine.slice('RESULT '.length)) as {
    node: string;
    results: { statusCode: number; headers: Record<string, string>; body: string }[];
  };
  return { node: version, results, lines };
}

describe('the acquire bundle the stack ships', () => {
  const acquireAsset = () => {
    const fn = built.template.findResources('AWS::Lambda::Function');
    const acquireId = idOf(fnOf('acquire'));
    const code = (fn[acquireId] as { Properties: { Code: { S3Key: string } } }).Properties.Code;
    return join(built.assembly.directory, `asset.${code.S3Key.replace(/\.zip$/, '')}`);
  };

  // A guard against a regression (a library pulled in by mistake), not a budget: what users
  // feel is cold start, which the benchmark measures.
  it('is at most 160 KB', () => {
    const size = statSync(join(acquireAsset(), 'index.mjs')).size;
    console.log(`acquire bundle: ${(size / 1024).toFixed(1)} KB minified`);
    expect(size).toBeLessThanOrEqual(160 * 1024);
  });

  // An ES module importing a Node built-in gets all of its exports evaluated: `node:http`'s
  // include lazy getters that load undici, on every cold start, for nothing used.
  it('nor does any handler bundle import a built-in whose exports load undici (node:http, node:https)', () => {
    const bundles = readdirSync(join(ROOT, 'lib/handlers'));
    expect(bundles).toContain('acquire');
    for (const name of bundles) {
      const code = readFileSync(join(ROOT, 'lib/handlers', name, 'index.mjs'), 'utf8');
      const builtins = [...code.matchAll(/from\s*"(node:[^"]+)"/g)].map((m) => m[1]);
      expect(builtins.length, name).toBeGreaterThan(0); // the pattern still finds its imports
      expect(
        builtins.filter((b) => /^node:https?$/.test(b ?? '')),
        name,
      ).toEqual([]);
    }
  });

  it('loads as Lambda loads it (index.handler) and answers as the local server does', async () => {
    const table = `infra-${randomBytes(4).toString('hex')}`;
    const client = localClient(inject('dynamoEndpoint'));
    await ensureTable(client, table);
    client.destroy();
    const body = (entity: string) => ({
      entity,
      resource: 'gpt-4o',
      usage: { tokens: 1_500 },
      limits: [{ name: 'tpm', metric: 'tokens', limit: 2_000, per: 2_592_000 }],
    });
    const run = await runBundle(acquireAsset(), table, inject('dynamoEndpoint'), [
      acquireEvent(body('bundle')),
      acquireEvent(body('bundle')),
    ]);
    decisionLog = run.lines.flatMap((line) => (line.startsWith('{') ? [JSON.parse(line)] : []));
    const { node: version, results } = run;
    console.log(`ran the synthesized acquire bundle under Node ${version}`);

    const api = await startApi(table);
    try {
      const local = [
        await post(`${api.url}/v1/acquire`, body('local')),
        await post(`${api.url}/v1/acquire`, body('local')),
      ];
      const shape = (
        status: number,
        headers: Record<string, string | null>,
        parsed: Record<string, unknown>,
      ) => ({
        status,
        ratelimit: headers.ratelimit?.replace(/t=\d+/, 't=?') ?? null,
        body: {
          ...parsed,
          lease_id: typeof parsed.lease_id,
          retry_after_ms: typeof parsed.retry_after_ms,
          detail: typeof parsed.detail,
          limits: parsed.limits ? 'limits' : undefined,
          violations: JSON.stringify(parsed.violations)?.replace(/"retry_after_ms":\d+/g, ''),
        },
      });
      const fromBundle = results.map((r) =>
        shape(r.statusCode, r.headers, JSON.parse(r.body) as Record<string, unknown>),
      );
      const fromLocal = local.map((r) => shape(r.status, Object.fromEntries(r.headers), r.body));
      expect(fromBundle).toEqual(fromLocal);
      expect(fromBundle.map((r) => r.status)).toEqual([200, 429]);
      expect(version).toMatch(/^v22\./);
    } finally {
      await api.stop();
    }
  });

  it("sends a new container's first acquire as one BatchGetItem, then its write", async () => {
    const table = `infra-${randomBytes(4).toString('hex')}`;
    const client = localClient(inject('dynamoEndpoint'));
    await ensureTable(client, table);
    client.destroy();
    const recorder = await startRecorder(inject('dynamoEndpoint'));
    onTestFinished(() => recorder.close());
    const ask = (entity: string) =>
      acquireEvent({
        entity,
        resource: 'gpt-4o',
        usage: { tokens: 10 },
        limits: [{ name: 'rpm', metric: 'requests', limit: 100, per: 'minute' }],
      });
    // The table's first acquire creates its signing key; a deployment's table holds one after.
    await runBundle(acquireAsset(), table, recorder.url, [ask('first')]);
    const from = recorder.exchanges.length;

    const { results } = await runBundle(acquireAsset(), table, recorder.url, [ask('cold')]);

    expect(results.map((r) => r.statusCode)).toEqual([200]);
    const sent = recorder.exchanges.slice(from).sort((a, b) => a.startMs - b.startMs);
    // What the init reads ahead (the signing keys, the settings, the `default` plan) and what the
    // call reads (the entity, the resource), in one request: the call runs in the same turn of
    // the event loop as the end of the import, as the bench times it. (In Lambda, where the
    // runtime fetches the event between the two, they are two requests, sent apart.)
    expect(sent.map((e) => e.operation)).toEqual(['BatchGetItem', 'UpdateItem']);
    expect(
      sent
        .flatMap(keysRead)
        .map((k) => `${k.pk} ${k.sk}`)
        .sort(),
    ).toEqual([
      'config#entity cold',
      'config#plan default',
      'config#resource gpt-4o',
      'config#settings settings',
      'meta#lease-signing-key v1',
    ]);
  });

  it('writes the decision lines its metric filters count, as CloudWatch reads them', () => {
    const filters = Object.values(built.template.findResources('AWS::Logs::MetricFilter')) as {
      Properties: {
        FilterPattern: string;
        LogGroupName: unknown;
        MetricTransformations: {
          MetricName: string;
          MetricNamespace: string;
          Dimensions?: { Key: string; Value: string }[];
        }[];
      };
    }[];
    const counted: Record<string, unknown[]> = {};
    for (const { Properties: filter } of filters) {
      const [metric] = filter.MetricTransformations;
      const hits = decisionLog.filter((line) => matches(filter.FilterPattern, line));
      // A dimension's field missing from a counted line would drop the data point in CloudWatch.
      counted[`${metric?.MetricNamespace}/${metric?.MetricName}`] = hits.map((line) =>
        Object.fromEntries((metric?.Dimensions ?? []).map((d) => [d.Key, line[d.Value.slice(2)]])),
      );
    }
    // The run admitted one call and refused one, on the limit `tpm`.
    expect(counted).toEqual({
      'Sluice/decisions': [{ service: 'sluice' }, { service: 'sluice' }],
      'Sluice/denials': [{ service: 'sluice' }],
      'Sluice/denials_by_limit': [{ service: 'sluice', limit: 'tpm' }],
    });
    // Every filter, and both Contributor Insights rules, read the acquire function's own group.
    const acquireLogs = { Ref: idOf(built.stack.sluice.node.findChild('acquire-logs') as never) };
    for (const { Properties: filter } of filters) expect(filter.LogGroupName).toEqual(acquireLogs);
    const rules = JSON.stringify(built.template.findResources('AWS::CloudWatch::InsightRule'));
    expect(rules.split(JSON.stringify(acquireLogs)).length - 1).toBe(2);
  });

  it('logs acquire decisions at INFO even when the other functions are quieter', () => {
    const dir = join(ROOT, 'cdk.out', `test-${randomBytes(4).toString('hex')}`);
    try {
      const { template, stack } = synth(dir, { logLevel: 'WARN' });
      const level = (name: FunctionName) => {
        const fn = stack.sluice.functions.get(name);
        const id = stack.getLogicalId(fn?.node.defaultChild as CfnElement);
        const props = template.toJSON().Resources[id].Properties as {
          Environment: { Variables: Record<string, string> };
        };
        return props.Environment.Variables.POWERTOOLS_LOG_LEVEL;
      };
      expect([level('acquire'), level('adjust'), level('admin')]).toEqual(['INFO', 'WARN', 'WARN']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
