/**
 * The one HTTP transport of the SDK: SigV4-signed JSON requests over Node's own HTTP client (or a
 * `fetch` the caller passes), for the client's decision routes and the admin routes alike. It
 * reads any answer: a JSON body, an empty one, or something else (an HTML error page from a
 * proxy), which becomes a `detail` and never throws a parse error at the caller.
 *
 * Node's client rather than the global `fetch`: on the same kept-open connection, `fetch` costs
 * more a call (more in a process busy with other I/O; docs/design.md, "Figures behind design decisions"), and a
 * Lambda that asks before each LLM call pays for that time.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { requestErrorFrom, SluiceClientError } from './errors.js';
import { type Credentials, endpointUrl, RequestSigner } from './signing.js';

/** Where Sluice is, how to sign for it, and what to send with. */
export interface TransportOptions {
  readonly endpoint: string;
  /** @default from the endpoint's host name, else AWS_REGION */
  readonly region?: string;
  /** @default the AWS SDK's default chain (a Lambda's role); none for http://localhost */
  readonly credentials?: Credentials;
  /** Sends through this instead of Node's HTTP client (a proxy's, a test's). @default none */
  readonly fetch?: typeof fetch;
}

/** An answer: its status, its body (parsed), whether the body was JSON, its rate-limit headers. */
export interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly json: boolean;
  /** `retry-after(-ms)`, `ratelimit`, `ratelimit-policy` and `x-ratelimit-*`, as Sluice sent them. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The `ETag` an admin answer carries: the entity tag of the document it names. */
  readonly etag?: string;
}

/** How long this request will wait for its answer (ms): Sluice stops its work by then. */
export const TIMEOUT_HEADER = 'x-sluice-timeout-ms';

/** The headers a caller may pass on to its own callers. */
const RATE_LIMIT_HEADER = /^(retry-after(-ms)?|ratelimit(-policy)?|x-ratelimit-.+)$/;

/** An answer as it came off the wire. */
export interface Received {
  readonly status: number;
  readonly text: string;
  /** By name, in lower case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

function rateLimitHeaders(received: Received): Record<string, string> {
  return Object.fromEntries(
    Object.entries(received.headers).flatMap(([name, value]) =>
      value !== undefined && RATE_LIMIT_HEADER.test(name) ? [[name, String(value)]] : [],
    ),
  );
}

/** Connections kept open between calls, one pool per protocol for the whole process. */
const agents = {
  http: new HttpAgent({ keepAlive: true }),
  https: new HttpsAgent({ keepAlive: true }),
};

/** A request as signed, ready to send. */
interface Outgoing {
  readonly url: URL;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly payload: string | undefined;
  /** Aborts the exchange at the deadline. */
  readonly signal: AbortSignal;
}

/** One exchange through Node's HTTP client; rejects on a network error or the deadline. */
function exchange({ url, method, headers, payload, signal }: Outgoing): Promise<Received> {
  const https = url.protocol === 'https:';
  const length =
    payload === undefined ? {} : { 'content-length': String(Buffer.byteLength(payload)) };
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method,
        agent: https ? agents.https : agents.http,
        headers: { ...headers, ...length },
        signal,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the answer ended'));
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The same exchange through a `fetch`. */
async function viaFetch(send: typeof fetch, out: Outgoing): Promise<Received> {
  const { url, method, headers, payload, signal } = out;
  const res = await send(url, {
    method,
    headers,
    ...(payload !== undefined ? { body: payload } : {}),
    signal,
  });
  const byName = new Map<string, string>();
  res.headers?.forEach((value, name) => {
    byName.set(name, value);
  });
  return { status: res.status, text: await res.text(), headers: Object.fromEntries(byName) };
}

/** What sends the SDK's requests and reads their answers: {@link Transport}, or another. */
export interface Sender {
  /** Where requests go, for messages. */
  readonly origin: string;
  /**
   * Sends one request (with `headers` beside the ones it signs) and reads its answer. Throws
   * when it cannot be sent or when `timeoutMs` passes first: the caller decides whether to retry.
   */
  send(
    method: string,
    path: string,
    body: unknown,
    timeoutMs: number,
    headers?: Readonly<Record<string, string>>,
  ): Promise<Answer>;
}

/** An answer read: its JSON body (or what it is instead) and its rate-limit headers. */
export function answerFrom(received: Received): Answer {
  const { status, text } = received;
  const rateLimit = rateLimitHeaders(received);
  const tag = received.headers.etag;
  const etag = typeof tag === 'string' ? { etag: tag } : {};
  if (!text) return { status, body: {}, json: true, headers: rateLimit, ...etag };
  try {
    return { status, body: JSON.parse(text) as unknown, json: true, headers: rateLimit, ...etag };
  } catch {
    return { status, body: { detail: text.slice(0, 200) }, json: false };
  }
}

/** Signs and sends requests to one Sluice endpoint. */
export class Transport implements Sender {
  readonly #base: URL;
  readonly #signer: RequestSigner;
  readonly #fetch: typeof fetch | undefined;

  constructor(options: TransportOptions) {
    this.#base = endpointUrl(options.endpoint);
    this.#signer = new RequestSigner(this.#base, options);
    this.#fetch = options.fetch;
  }

  /** The endpoint's origin, for messages. */
  get origin(): string {
    return this.#base.origin;
  }

  /**
   * Sends one request and reads its answer. Throws on a network error or when `timeoutMs`
   * passes first: the caller decides whether to retry.
   */
  async send(
    method: string,
    path: string,
    body: unknown,
    timeoutMs: number,
    extra: Readonly<Record<string, string>> = {},
  ): Promise<Answer> {
    const url = new URL(path, this.#base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    // One deadline for finding credentials, signing and the exchange together.
    const deadline = Date.now() + timeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    const headers = {
      ...extra, // not signed: SigV4 covers the headers it names, and these it does not need
      ...(await this.#signer.headers(method, url, payload, signal)),
      // Sluice stops working on the request (and gives back what it took) when this caller
      // stops waiting, rather than answer a lease nobody receives.
      [TIMEOUT_HEADER]: String(Math.max(1, Math.floor(deadline - Date.now()))),
    };
    const out = { url, method, headers, payload, signal };
    return answerFrom(this.#fetch ? await viaFetch(this.#fetch, out) : await exchange(out));
  }
}

/**
 * One request, no retries, for the read and admin routes: a 2xx JSON answer (or an `expected`
 * status) is returned; Sluice's refusals throw {@link SluiceRequestError}, and not reaching it
 * throws {@link SluiceClientError} `unavailable`.
 */
export async function strictRequest(
  transport: Sender,
  method: string,
  path: string,
  timeoutMs: number,
  body?: unknown,
  expected: readonly number[] = [],
  headers?: Readonly<Record<string, string>>,
): Promise<Answer> {
  let answer: Answer;
  try {
    answer = await transport.send(method, path, body, timeoutMs, headers);
  } catch (error) {
    if (error instanceof SluiceClientError) throw error; // the sender's own verdict
    throw new SluiceClientError(
      'unavailable',
      `Sluice cannot be reached at ${transport.origin}`,
      undefined,
      { cause: error },
    );
  }
  if ((answer.status < 300 && answer.json) || expected.includes(answer.status)) return answer;
  throw requestErrorFrom(answer.status, answer.body);
}
