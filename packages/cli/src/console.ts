/**
 * `sluice console`: the console's page on 127.0.0.1 for a deployed stack, and a proxy that signs
 * the page's API calls. The page calls `/v1/…` on its own origin; the proxy forwards each call to
 * the endpoint signed with the operator's AWS credentials (the SDK's signer), so the credentials
 * stay in this process: the browser gets the API's status, body and a few headers of its answer,
 * never a credential. What the page may do is what those credentials may do; API Gateway's 403
 * reaches the page as it is, which shows it as "Your role may not do this."
 *
 * The proxy is for the page on this machine only. It listens on 127.0.0.1, answers only requests
 * addressed to it by that name or `localhost` (a DNS-rebound name is refused), and forwards an
 * API call only from its own page: a write must carry the page's Origin, and a request a browser
 * marks as coming from another site (`Sec-Fetch-Site`) is refused. A call's body must be JSON. It
 * forwards the path, query, method, body and a write's `If-Match` / `If-None-Match`; no other
 * header of the browser's (cookies included) reaches the API, and only the answer headers the
 * page reads come back.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Credentials, endpointUrl, RequestSigner } from '@sluice/client/signing';
import { CONSOLE_PATH, consoleFiles, consoleServer } from '@sluice/console';

/** Where the console's proxy listens unless `--port` says otherwise. */
export const CONSOLE_PORT = 3100;

/** The only address the proxy listens on. */
const LOOPBACK = '127.0.0.1';

/** The paths forwarded to the API. */
const API_PREFIX = '/v1/';

/** The methods of the API's routes: anything else (OPTIONS, a CORS preflight) is refused. */
const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE']);

/** The largest body forwarded (the admin API's documents are a few KB). */
const MAX_BODY_BYTES = 1024 * 1024;

/** How long an API call may take before the page is told the API did not answer. */
const UPSTREAM_TIMEOUT_MS = 30_000;

/**
 * Answer headers passed back to the page: the body's type, a stored document's version (`etag`),
 * what a refusal says of retries, and which part of AWS refused (`x-amzn-errortype`).
 */
const PASSED_BACK =
  /^(content-type|etag|retry-after(-ms)?|ratelimit(-policy)?|x-ratelimit-.+|x-request-id|x-amzn-requestid|x-amzn-errortype)$/;

/** The page's request headers forwarded: a write's conditions on the version it read. */
const FORWARDED = ['if-match', 'if-none-match'] as const;

/**
 * What the proxy adds to every answer of its own and every forwarded one. No answer may run as a
 * page on the console's origin (a script there could call /v1/ with the console's own Origin, and
 * the proxy would sign for it): an HTML error page from the endpoint is sandboxed and inert.
 */
const ANSWER_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; sandbox",
};

export interface ConsoleProxyOptions {
  /** The deployed API (`https://…execute-api…`); calls go to its origin. */
  readonly endpoint: string;
  /** @default from the endpoint's host name, else AWS_REGION */
  readonly region?: string | undefined;
  /** What signs every call (the operator's credentials): always used, local endpoint or not. */
  readonly credentials: Credentials;
  /** @default {@link CONSOLE_PORT}; 0 picks a free port */
  readonly port?: number;
  /** Told of each refused request, in a line. @default nothing */
  readonly log?: (line: string) => void;
}

/** A running proxy: the console is at `url` + `/console`. */
export interface ConsoleProxy {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A problem+json answer of the proxy's own. Its code tells the page this is not the API's answer
 * (a 403 without one would read as IAM's: "Your role may not do this.").
 */
function problem(res: ServerResponse, status: number, title: string, detail: string): void {
  const body = JSON.stringify({ status, code: 'console_proxy', title, detail });
  res.writeHead(status, { 'content-type': 'application/problem+json', ...ANSWER_HEADERS });
  res.end(body);
}

/**
 * Why a request must not be answered, or undefined when it may be: it names another host, or
 * (an API call) it comes from a page of another origin.
 */
function refusalOf(req: IncomingMessage, port: number, api: boolean): string | undefined {
  const host = (req.headers.host ?? '').toLowerCase();
  // A browser leaves the port out of Host when it is HTTP's own (80).
  const names = port === 80 ? [LOOPBACK, 'localhost'] : [];
  const ours = [`${LOOPBACK}:${port}`, `localhost:${port}`, ...names];
  if (!ours.includes(host)) return `Host ${JSON.stringify(host)} is not this console's`;
  if (!api) return undefined;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return `a ${site} request (Sec-Fetch-Site)`;
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`)
    return `Origin ${JSON.stringify(origin)} is not this console's`;
  if (origin === undefined && req.method !== 'GET')
    return `a ${req.method} without the console's Origin`;
  return undefined;
}

/** The body, or undefined when it is larger than {@link MAX_BODY_BYTES}. */
async function bodyOf(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const isJson = (type: string | undefined): boolean =>
  /^application\/(problem\+)?json\s*(;|$)/i.test(type ?? '');

/** Forwards one API call to `target` (on the endpoint's origin), signed; passes the answer back. */
async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: URL,
  signer: RequestSigner,
): Promise<void> {
  const method = req.method ?? 'GET';
  if (!METHODS.has(method))
    return problem(res, 405, 'Method not allowed', `${method} is not a method of the API`);
  const body = await bodyOf(req);
  if (!body) return problem(res, 413, 'Too large', `a body is at most ${MAX_BODY_BYTES} bytes`);
  if (body.length > 0 && !isJson(req.headers['content-type']))
    return problem(res, 415, 'Unsupported media type', 'the API takes JSON bodies only');
  const payload = body.length > 0 ? body.toString('utf8') : undefined;
  let headers: Record<string, string>;
  try {
    headers = await signer.headers(
      method,
      target,
      payload,
      AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    );
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return problem(res, 500, 'No AWS credentials', `the console cannot sign: ${why}`);
  }
  let answer: Response;
  try {
    // fetch sets Host itself, to the host signed for.
    const { host: _, ...sent } = headers;
    for (const name of FORWARDED) {
      const value = req.headers[name];
      if (typeof value === 'string') sent[name] = value;
    }
    answer = await fetch(target, {
      method,
      headers: sent,
      ...(payload !== undefined ? { body: payload } : {}),
      redirect: 'manual',
      signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    });
  } catch {
    return problem(res, 502, 'Sluice cannot be reached', `no answer from ${target.origin}`);
  }
  const passed = new Map<string, string>();
  answer.headers.forEach((value, name) => {
    if (PASSED_BACK.test(name)) passed.set(name, value);
  });
  const text = Buffer.from(await answer.arrayBuffer());
  res.writeHead(answer.status, { ...Object.fromEntries(passed), ...ANSWER_HEADERS });
  res.end(text);
}

/** Starts the console and its proxy on 127.0.0.1 for `options.endpoint`. */
export async function startConsoleProxy(options: ConsoleProxyOptions): Promise<ConsoleProxy> {
  const base = endpointUrl(options.endpoint);
  const signer = new RequestSigner(base, {
    region: options.region,
    credentials: options.credentials,
  });
  const pages = consoleServer(await consoleFiles());
  const log = options.log ?? (() => {});
  let port = options.port ?? CONSOLE_PORT;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${LOOPBACK}`);
    const api = url.pathname.startsWith(API_PREFIX);
    const refused = refusalOf(req, port, api);
    if (refused) {
      log(`refused ${req.method} ${url.pathname}: ${refused}`);
      return problem(res, 403, 'Forbidden', `${refused}: this console answers its own page only`);
    }
    if (api) {
      forward(req, res, new URL(url.pathname + url.search, base), signer).catch(() => {
        if (!res.headersSent) problem(res, 502, 'Bad gateway', 'the answer could not be read');
        else res.destroy();
      });
      return;
    }
    if (url.pathname === '/') {
      res.writeHead(302, { location: CONSOLE_PATH, ...ANSWER_HEADERS });
      res.end();
      return;
    }
    const page = pages(url.pathname);
    if (!page) return problem(res, 404, 'Not found', 'the console is at /console');
    res.writeHead(page.status, page.headers);
    res.end(page.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, resolve);
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${LOOPBACK}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
