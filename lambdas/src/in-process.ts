/**
 * The client routes' handlers, called in the caller's own process: each call becomes the event
 * API Gateway would send the route's function, and the answer is what that function answers. No
 * HTTP API and no Sluice function in between, and the decisions cannot drift from theirs: they
 * are the same code. Each {@link inProcess} has a runtime of its own, made from its options (the
 * environment variables the functions read are not read), on the table the deployed functions
 * use: the same buckets, leases and signing keys, and the same items for the usage aggregator.
 *
 * The admin routes are not served here: stored configuration is changed through the API.
 */
// First: the handlers below then start no container reads from this process's environment.
import './in-process-mark.js';
import type { DynamoDBClient, DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { ENGINE_DEFAULTS, SERVICE_DEFAULTS } from '@sluice/core/internal';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { handler as acquire } from './acquire.js';
import { handler as adjust } from './adjust.js';
import { handler as available } from './available.js';
import { EnvironmentError, SetupError } from './errors.js';
import { handler as health } from './health.js';
import type { JsonEvent } from './http/edge.js';
import { apiEvent, invocationContext, matchPath } from './http/events.js';
import { TIMEOUT_HEADER } from './http/limits.js';
import { problem, type Result } from './http/problem.js';
import { handler as release } from './release.js';
import { type FunctionName, type Route, routes } from './routes.js';
import { createRuntime, dynamodbClient, type Runtime, warm, withRuntime } from './runtime.js';
import { handler as usage } from './usage.js';

/** Where an in-process Sluice finds its table, and how it behaves. */
export interface InProcessOptions {
  /** The Sluice table's name (the construct's `tableName`). */
  readonly table: string;
  /**
   * The DynamoDB client to use. @default one made from `dynamodbEndpoint`, `region` and
   * `credentials`, with Sluice's retry strategy and connection settings
   */
  readonly dynamodb?: DynamoDBClient;
  /** Another DynamoDB (DynamoDB Local). @default AWS's regional endpoint */
  readonly dynamodbEndpoint?: string;
  /** The table's region. @default AWS_REGION */
  readonly region?: string;
  /** @default the AWS SDK's default chain (a Lambda's role) */
  readonly credentials?: DynamoDBClientConfig['credentials'];
  /**
   * How long stored configuration read is reused (ms); a change takes effect within it.
   * @default 30_000, as in the deployed functions
   */
  readonly configCacheMs?: number;
  /** How long refusals are gathered before they are written for usage history (ms). */
  readonly denialFlushMs?: number;
  /** Consuming writes per second to one shard at which a sharded scope doubles its shards. */
  readonly shardGrowWritesPerSecond?: number;
  /**
   * The IAM principal ARN to act as, where an entity (or an ancestor) names `callers`. Nothing
   * authenticates it: it is what this code says it is. @default none: entities that name
   * callers refuse this client (`caller_not_allowed`)
   */
  readonly principal?: string;
}

/** A handler's answer: status, headers and body text. */
export interface InProcessAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Calls a route's handler in this process. */
export interface InProcessSluice {
  /**
   * Writes the refusals gathered for usage history now (they are also written every
   * `denialFlushMs`, and as the process's event loop empties). A short-lived process calls it
   * before it ends; it never rejects (a failed write is kept for the next).
   */
  flush(): Promise<void>;
  /**
   * Answers `method` `target` (a path with its query) with `body` (JSON text) as the route's
   * function would, within `timeoutMs`, the function's deadline.
   */
  call(
    method: string,
    target: string,
    body: string | undefined,
    timeoutMs: number,
  ): Promise<InProcessAnswer>;
}

type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<Result>;

/** The functions served here, by name. */
const HANDLERS: Partial<Record<FunctionName, Handler>> = {
  acquire,
  adjust,
  release,
  available,
  usage,
  health,
};

const SERVED: readonly Route[] = routes.filter((r) => HANDLERS[r.function] !== undefined);

function wholeNumber(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0)
    throw new EnvironmentError(`${name} must be a whole number, not ${value}`);
  return value;
}

/** The runtime `options` describe: what a function's environment variables describe there. */
export function inProcessRuntime(options: InProcessOptions): Runtime {
  if (!options.table) throw new EnvironmentError('table: the Sluice table’s name is required');
  const env = {
    tableName: options.table,
    ...(options.dynamodbEndpoint ? { dynamodbEndpoint: options.dynamodbEndpoint } : {}),
    service: SERVICE_DEFAULTS.serviceName,
    configCacheMs: wholeNumber(
      'configCacheMs',
      options.configCacheMs,
      SERVICE_DEFAULTS.configCacheMs,
    ),
    denialFlushMs: wholeNumber(
      'denialFlushMs',
      options.denialFlushMs,
      SERVICE_DEFAULTS.denialFlushMs,
    ),
    shardGrowWritesPerSecond: wholeNumber(
      'shardGrowWritesPerSecond',
      options.shardGrowWritesPerSecond,
      ENGINE_DEFAULTS.shardGrowWritesPerSecond,
    ),
  };
  const client =
    options.dynamodb ??
    dynamodbClient(env, {
      ...(options.region ? { region: options.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  return createRuntime(env, client);
}

/** The route served here that takes `method` `path`, and the path's parameters. */
function routeOf(method: string, path: string) {
  for (const route of SERVED) {
    const params = route.method === method ? matchPath(route.path, path) : undefined;
    if (params) return { route, params };
  }
  return undefined;
}

/** The answer of a handler as text and headers, whatever shape it took. */
function answerOf(result: Result): InProcessAnswer {
  const body = result.body ?? '';
  return {
    status: result.statusCode ?? 200,
    headers: Object.fromEntries(
      Object.entries(result.headers ?? {}).map(([name, value]) => [
        name.toLowerCase(),
        String(value),
      ]),
    ),
    body: result.isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body,
  };
}

/**
 * A Sluice in this process: the runtime `options` describe, and the handlers run in it. The
 * signing keys, settings and `default` plan its first acquire needs are read at once (as an
 * acquire function's container does in its init), so that the call waits on fewer round trips.
 */
export function inProcess(options: InProcessOptions): InProcessSluice {
  const runtime = inProcessRuntime(options);
  warm(runtime, 'acquire');
  const flush = () => withRuntime(runtime, () => runtime.denials.flushDue(true)).catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Refusals are gathered per process: written when due by a timer (not only by a later acquire,
  // as a function's are), and as the process runs out of work; no timer while none is gathered.
  const schedule = () => {
    if (timer || !runtime.denials.pending) return;
    unwritten.add(flush);
    timer = setTimeout(() => {
      timer = undefined;
      unwritten.delete(flush);
      void flush().then(schedule);
    }, runtime.env.denialFlushMs);
    timer.unref();
  };
  return {
    flush,
    async call(method, target, body, timeoutMs) {
      const url = new URL(target, 'http://in-process');
      const found = routeOf(method, url.pathname);
      if (!found) return answerOf(problem(404, 'not_found', `no route ${method} ${url.pathname}`));
      const { route, params } = found;
      const event = apiEvent({
        route,
        path: url.pathname,
        query: url.search.slice(1),
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          // The caller's deadline is the function's: it answers (503) before it passes.
          [TIMEOUT_HEADER]: String(Math.max(1, Math.floor(timeoutMs))),
        },
        body: body ?? '',
        pathParameters: params,
        principal: options.principal,
        domainName: 'in-process',
        sourceIp: '127.0.0.1',
        protocol: 'HTTP/1.1',
      });
      const { requestId } = event.requestContext;
      const context = invocationContext(
        `sluice-in-process-${route.function}`,
        requestId,
        timeoutMs,
      );
      const handler = HANDLERS[route.function] as Handler;
      const result = await withRuntime(runtime, () => handler(event, context));
      schedule();
      const fault = setupFault((event as JsonEvent).failure);
      if (fault)
        throw new SetupError(
          `DynamoDB refused this process's use of table ${options.table} (${fault}): check the name, and that its role has the construct's grantInProcess`,
        );
      return answerOf(result);
    },
  };
}

/** The flushes of clients with refusals not yet written: all run when the process runs out of work. */
const unwritten = new Set<() => Promise<void>>();
process.on('beforeExit', () => {
  for (const flush of unwritten) void flush();
  unwritten.clear();
});

/** DynamoDB's errors that say the caller's setup is wrong (its role, its table), not an outage. */
const SETUP_FAULTS = new Set([
  'AccessDeniedException',
  'ResourceNotFoundException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'MissingAuthenticationTokenException',
]);

/** The name of the setup fault in `error` or its causes, if one is. */
function setupFault(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; depth++) {
    if (SETUP_FAULTS.has(e.name)) return e.name;
    e = e.cause;
  }
  return undefined;
}
