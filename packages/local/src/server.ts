/**
 * The local API: turns each HTTP request into an API Gateway HTTP API (payload 2.0) event, calls
 * the handler the route table names, and writes its result back — the same code path as in AWS.
 * There is no IAM here, so no SigV4 check, and no caller identity unless the server is told to
 * trust one from a header ({@link LOCAL_PRINCIPAL_HEADER}; never in production).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { InvokeStore, InvokeStoreBase } from '@aws/lambda-invoke-store';
import { apiEvent, invocationContext, matchPath } from '@sluice/lambdas/events';
import { problem } from '@sluice/lambdas/problem';
import { type Route, routeKey } from '@sluice/lambdas/routes';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import { requestAnswered } from './telemetry.js';

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/** API Gateway refuses payloads over 10 MB; locally the cap is 1 MB (handlers refuse over 64 KB). */
const MAX_READ_BYTES = 1024 * 1024;

/**
 * The header the local server reads the caller's IAM principal ARN from, when started with
 * `trustPrincipalHeader` (`npm start`: SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER=1). It stands in
 * for what API Gateway's IAM authorizer reports in AWS, where the handlers never read it.
 */
export const LOCAL_PRINCIPAL_HEADER = 'x-sluice-principal';

/**
 * What the local server tells Powertools and the AWS SDK (`AWS_LAMBDA_MAX_CONCURRENCY`), as
 * Lambda tells a function that serves invocations concurrently: each runs in its own context.
 */
export const LOCAL_CONCURRENCY = '1000';

/**
 * The process's invocation store, made for invocations that run at once (`LOCAL_CONCURRENCY`),
 * as Lambda's runtime makes it for a function that serves them concurrently. The process's first
 * AWS SDK call makes the store if nothing has: a process that embeds the server calls this first.
 */
export function concurrentInvocations(): Promise<InvokeStoreBase> {
  process.env.AWS_LAMBDA_MAX_CONCURRENCY ??= LOCAL_CONCURRENCY;
  return InvokeStore.getInstanceAsync(true);
}

/** A running local API. */
export interface LocalServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Writes a handler's result, or the server's own refusal, to the socket. */
function send(res: ServerResponse, result: APIGatewayProxyStructuredResultV2): void {
  const status = result.statusCode ?? 200;
  const body = Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
  // With its length, as API Gateway answers (not chunked); a 204 has neither body nor length.
  const headers = Object.fromEntries([
    ...(status === 204 ? [] : [['content-length', String(body.length)]]),
    ...Object.entries(result.headers ?? {}).map(([name, value]) => [name, String(value)]),
  ]);
  res.writeHead(status, headers);
  res.end(status === 204 ? undefined : body);
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_READ_BYTES) {
        resolve(null);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_READ_BYTES ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const firstOf = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function toEvent(
  req: IncomingMessage,
  url: URL,
  body: Buffer,
  route: Route,
  pathParameters: Record<string, string>,
  principal: string | undefined,
): APIGatewayProxyEventV2 {
  const headers = Object.fromEntries(
    Object.entries(req.headers).flatMap(([name, value]) =>
      value === undefined ? [] : [[name, Array.isArray(value) ? value.join(',') : value]],
    ),
  );
  return apiEvent({
    route,
    path: url.pathname,
    query: url.search.slice(1),
    headers,
    body: body.toString('utf8'),
    pathParameters,
    principal,
    domainName: url.host,
    sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
    protocol: `HTTP/${req.httpVersion}`,
  });
}

/** How long a local invocation may run, as a deployed function's timeout. @default 10 s */
export const LOCAL_FUNCTION_TIMEOUT_MS = 10_000;

const contextFor = (route: Route, requestId: string, timeoutMs: number): Context =>
  invocationContext(`sluice-local-${route.function}`, requestId, timeoutMs);

/** How {@link startLocalServer} serves. */
export interface LocalServerOptions {
  readonly routes: readonly Route[];
  readonly port?: number;
  readonly host?: string;
  /**
   * Take the caller's IAM principal from the {@link LOCAL_PRINCIPAL_HEADER} header, as if IAM had
   * authenticated it: for trying and testing entities' `callers` only. Anyone who can reach the
   * port can then claim any principal. @default false
   */
  readonly trustPrincipalHeader?: boolean;
  /**
   * How long each request may run, as the function timeout does in AWS: a decision that cannot
   * finish in time answers 503 before it. @default {@link LOCAL_FUNCTION_TIMEOUT_MS}
   */
  readonly functionTimeoutMs?: number;
  /**
   * Told after each request to one of `routes` has been answered, however it ended (not of
   * requests no route takes): `npm start` wakes its stream reader after the routes that write
   * what usage history counts.
   */
  readonly afterCall?: (route: Route) => void;
  /**
   * Pages served beside the API (`npm start` serves the console at /console): asked first for
   * each GET or HEAD with its path; undefined leaves the request to the routes.
   */
  readonly pages?: (pathname: string) => Page | undefined;
  /**
   * Host names requests may address the server by, besides IP addresses and `localhost` (and
   * names under it), which are always allowed. Any other name in `Host` is refused (403): a web
   * page whose own name its owner points at this machine (DNS rebinding) sends it, and would
   * otherwise read and write the API as if it were the console. @default none
   */
  readonly allowedHosts?: readonly string[];
}

/** Whether `Host` names the server by an IP address, `localhost`, or a name it was given. */
export function hostAllowed(host: string | undefined, allowed: readonly string[] = []): boolean {
  if (host === undefined) return true; // HTTP/1.0: no browser sends a request without one
  // The name without its port, and without the root's dot (`localhost.` is `localhost`).
  const name = (/^\[[^\]]*\]/.exec(host)?.[0] ?? host.replace(/:\d*$/, ''))
    .toLowerCase()
    .replace(/\.$/, '');
  if (/^\[[0-9a-f:.]+\]$/.test(name) || /^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return true;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  return allowed.some((a) => a.toLowerCase().replace(/\.$/, '') === name);
}

/** A page's answer: status, headers and bytes. */
export interface Page {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/**
 * Serves `routes` on 127.0.0.1.
 *
 * @example
 * const server = await startLocalServer({ routes, port: 3000 });
 * console.log(server.url);
 */
export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  // Many requests run at once here, as invocations do in a Lambda function that serves them
  // concurrently: as its runtime does, run each in a context of its own, so that what the
  // handlers' logger keys per request (route, request id, entity) stays on that request's lines.
  const invocations = await concurrentInvocations();
  const handlers = new Map<string, Handler>();
  for (const route of options.routes) {
    const module = (await import(route.entry.href)) as { handler: Handler };
    handlers.set(routeKey(route), module.handler);
  }
  const invoke = (route: Route, event: APIGatewayProxyEventV2) => {
    const { requestId } = event.requestContext;
    const timeoutMs = options.functionTimeoutMs ?? LOCAL_FUNCTION_TIMEOUT_MS;
    const context = contextFor(route, requestId, timeoutMs);
    const handler = handlers.get(routeKey(route)) as Handler;
    const key = InvokeStoreBase.PROTECTED_KEYS.REQUEST_ID;
    const startedAt = performance.now();
    const answered = invocations.run({ [key]: requestId }, () => handler(event, context));
    void answered.then(
      (result) => requestAnswered(route.method, route.path, result.statusCode ?? 200, startedAt),
      () => requestAnswered(route.method, route.path, 500, startedAt),
    );
    if (options.afterCall) void answered.finally(() => options.afterCall?.(route)).catch(() => {});
    return answered;
  };
  const server: Server = createServer(async (req, res) => {
    try {
      send(res, await answer(options, req, invoke));
    } catch {
      if (!res.headersSent) send(res, problem(500, 'internal', 'internal error'));
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One request's answer: its route's handler's, or the server's own refusal (404, 405, 413). */
async function answer(
  options: LocalServerOptions,
  req: IncomingMessage,
  invoke: (
    route: Route,
    event: APIGatewayProxyEventV2,
  ) => Promise<APIGatewayProxyStructuredResultV2>,
): Promise<APIGatewayProxyStructuredResultV2> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = req.method ?? 'GET';
  if (!hostAllowed(req.headers.host, options.allowedHosts)) {
    req.resume();
    return problem(403, 'host_not_allowed', 'this server answers to localhost or an IP address');
  }
  const page = method === 'GET' || method === 'HEAD' ? options.pages?.(url.pathname) : undefined;
  if (page) {
    req.resume();
    const body = Buffer.from(page.body).toString('base64');
    return { statusCode: page.status, headers: { ...page.headers }, body, isBase64Encoded: true };
  }
  // As API Gateway HTTP APIs do, route on the decoded path (an encoded / is a /).
  const path = decodePath(url.pathname);
  const matching = options.routes.flatMap((r) => {
    const params = matchPath(r.path, path);
    return params ? [{ route: r, params }] : [];
  });
  const found = matching.find((m) => m.route.method === method);
  if (!found) {
    const allowed = matching.map((m) => m.route.method);
    req.resume();
    if (allowed.length === 0) return problem(404, 'not_found', `no route ${method} ${path}`);
    const list = allowed.join(', ');
    return problem(405, 'method_not_allowed', `use ${list}`, {}, { allow: list });
  }
  const body = await readBody(req);
  if (body === null) return problem(413, 'payload_too_large', 'the body is too large');
  const claimed = options.trustPrincipalHeader ? req.headers[LOCAL_PRINCIPAL_HEADER] : undefined;
  return invoke(found.route, toEvent(req, url, body, found.route, found.params, firstOf(claimed)));
}
