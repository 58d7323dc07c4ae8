/**
 * The one HTTP transport of the SDK: SigV4-signed JSON requests over fetch, for the client's
 * decision routes and the admin routes alike. It reads any answer: a JSON body, an empty one, or
 * something else (an HTML error page from a proxy), which becomes a `detail` and never throws a
 * parse error at the caller.
 */
import { requestErrorFrom, SluiceClientError } from './errors.js';
import { type Credentials, endpointUrl, RequestSigner } from './signing.js';

/** Where Sluice is, how to sign for it, and what to send with. */
export interface TransportOptions {
  readonly endpoint: string;
  /** @default from the endpoint's host name, else AWS_REGION */
  readonly region?: string;
  /** @default the AWS SDK's default chain (a Lambda's role); none for http://localhost */
  readonly credentials?: Credentials;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** An answer: its status, its body (parsed), whether the body was JSON, its rate-limit headers. */
export interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly json: boolean;
  /** `retry-after(-ms)`, `ratelimit`, `ratelimit-policy` and `x-ratelimit-*`, as Sluice sent them. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** The headers a caller may pass on to its own callers. */
const RATE_LIMIT_HEADER = /^(retry-after(-ms)?|ratelimit(-policy)?|x-ratelimit-.+)$/;

function rateLimitHeaders(res: Response): Record<string, string> {
  const headers: Record<string, string> = {};
  res.headers?.forEach((value, name) => {
    if (RATE_LIMIT_HEADER.test(name)) headers[name] = value;
  });
  return headers;
}

/** Signs and sends requests to one Sluice endpoint. */
export class Transport {
  readonly #base: URL;
  readonly #signer: RequestSigner;
  readonly #fetch: typeof fetch;

  constructor(options: TransportOptions) {
    this.#base = endpointUrl(options.endpoint);
    this.#signer = new RequestSigner(this.#base, options);
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** The endpoint's origin, for messages. */
  get origin(): string {
    return this.#base.origin;
  }

  /**
   * Sends one request and reads its answer. Throws what fetch throws (a network error, the
   * timeout's abort): the caller decides whether to retry.
   */
  async send(method: string, path: string, body: unknown, timeoutMs: number): Promise<Answer> {
    const url = new URL(path, this.#base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const res = await this.#fetch(url, {
      method,
      headers: await this.#signer.headers(method, url, payload),
      ...(payload !== undefined ? { body: payload } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    const headers = rateLimitHeaders(res);
    if (!text) return { status: res.status, body: {}, json: true, headers };
    try {
      return { status: res.status, body: JSON.parse(text) as unknown, json: true, headers };
    } catch {
      return { status: res.status, body: { detail: text.slice(0, 200) }, json: false };
    }
  }
}

/**
 * One request, no retries, for the read and admin routes: a 2xx JSON answer (or an `expected`
 * status) is returned; Sluice's refusals throw {@link SluiceRequestError}, and not reaching it
 * throws {@link SluiceClientError} `unavailable`.
 */
export async function strictRequest(
  transport: Transport,
  method: string,
  path: string,
  timeoutMs: number,
  body?: unknown,
  expected: readonly number[] = [],
): Promise<Answer> {
  let answer: Answer;
  try {
    answer = await transport.send(method, path, body, timeoutMs);
  } catch (error) {
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
