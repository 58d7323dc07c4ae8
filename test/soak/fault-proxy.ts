/**
 * A fault-injecting proxy in front of DynamoDB's HTTP endpoint (DynamoDB Local here). DynamoDB
 * speaks JSON over POST, naming the operation in `X-Amz-Target`
 * (`DynamoDB_20120810.UpdateItem`). While a fault plan is set, each request the plan covers may
 * be answered without being forwarded — a throttle (HTTP 400,
 * `ProvisionedThroughputExceededException` or `ThrottlingException`) or an HTTP 500
 * `InternalServerError` — or forwarded and, once DynamoDB has applied it, answered by dropping
 * the connection: the caller cannot know it was applied. Every injected fault is recorded with
 * its time and target, and a dropped write with its request body, so an oracle knows exactly
 * which of those writes applied. Every exchange is recorded too, with what `inspect` keeps of it.
 */
import { createHash } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the proxy does to the requests a plan covers: each a probability in [0, 1]. */
export interface FaultPlan {
  /** Answer 400 throttling without forwarding. */
  readonly throttle?: number;
  /** Answer 500 InternalServerError without forwarding. */
  readonly internal?: number;
  /** Forward, and once DynamoDB answered 200 (applied), drop the connection (writes only). */
  readonly dropAfterApplied?: number;
}

export type FaultKind = 'throttle' | 'internal' | 'drop_after_applied';

/** A fault the proxy injected. */
export interface InjectedFault {
  readonly atMs: number;
  readonly target: string;
  readonly kind: FaultKind;
  /** The exception named in the answer (throttle, internal). */
  readonly exception?: string;
  /** The request body of a write dropped after it applied. */
  readonly body?: string;
  /** sha256 of the request body: a resend of the same bytes has the same. */
  readonly bodyHash: string;
}

/**
 * What became of one request. `applied` (DynamoDB answered 200), `refused` (DynamoDB answered
 * another status: a failed condition, a cancelled transaction: nothing applied), `dropped` (200
 * from DynamoDB, connection dropped by the proxy), `injected` (a throttle or a 500 from the
 * proxy: not forwarded), `unreached` (DynamoDB refused the connection: not applied), `unknown`
 * (sent, and DynamoDB never answered: reset, killed).
 */
export type ExchangeOutcome =
  | 'applied'
  | 'refused'
  | 'dropped'
  | 'injected'
  | 'unreached'
  | 'unknown';

export interface ProxyExchange<T> {
  readonly id: number;
  readonly target: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly outcome: ExchangeOutcome;
  readonly status?: number;
  readonly bodyHash: string;
  /** What {@link FaultProxyOptions.inspect} kept of it. */
  readonly note?: T;
}

export interface FaultProxyOptions<T> {
  /** DynamoDB's endpoint, `http://127.0.0.1:<port>`. */
  readonly upstream: string;
  /** Uniform in [0, 1). @default Math.random */
  readonly random?: () => number;
  /** Which requests the plan covers. @default data-plane operations of DynamoDB_20120810 */
  readonly faultable?: (target: string, body: string) => boolean;
  /** Keeps what an oracle needs of an exchange (`status` 0: sent, and DynamoDB never answered). */
  readonly inspect?: (target: string, requestBody: string, status: number) => T | undefined;
}

const DATA_PLANE = new Set([
  'GetItem',
  'PutItem',
  'UpdateItem',
  'DeleteItem',
  'Query',
  'Scan',
  'BatchGetItem',
  'BatchWriteItem',
  'TransactGetItems',
  'TransactWriteItems',
]);
const WRITES = new Set([
  'PutItem',
  'UpdateItem',
  'DeleteItem',
  'BatchWriteItem',
  'TransactWriteItems',
]);

const operationOf = (target: string) => target.slice(target.indexOf('.') + 1);

/** Data-plane operations of DynamoDB (not the stream API, not table management). */
export const dataPlane = (target: string): boolean =>
  target.startsWith('DynamoDB_20120810.') && DATA_PLANE.has(operationOf(target));

const isWrite = (target: string): boolean => WRITES.has(operationOf(target));

const NAMESPACE = 'com.amazonaws.dynamodb.v20120810#';

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** A running fault proxy. */
export class FaultProxy<T = never> {
  /** The plan in force; `{}` forwards everything untouched. */
  plan: FaultPlan = {};
  readonly faults: InjectedFault[] = [];
  readonly exchanges: ProxyExchange<T>[] = [];
  #inFlight = 0;
  #nextId = 0;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 256 });
  readonly #upstream: URL;
  readonly #random: () => number;
  readonly #faultable: (target: string, body: string) => boolean;
  readonly #inspect: FaultProxyOptions<T>['inspect'];

  private constructor(
    private readonly server: Server,
    options: FaultProxyOptions<T>,
  ) {
    this.#upstream = new URL(options.upstream);
    this.#random = options.random ?? Math.random;
    this.#faultable = options.faultable ?? dataPlane;
    this.#inspect = options.inspect;
  }

  /** Starts a proxy on a free loopback port. */
  static async start<T = never>(options: FaultProxyOptions<T>): Promise<FaultProxy<T>> {
    const server = createServer();
    const proxy = new FaultProxy<T>(server, options);
    server.on('request', (req, res) => {
      proxy.#handle(req, res).catch(() => res.destroy());
    });
    // The SDK keeps connections open; a DynamoDB Local held by SIGSTOP keeps answers back for
    // longer than Node's default request timeouts.
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Requests forwarded and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.#agent.destroy();
  }

  #record(exchange: Omit<ProxyExchange<T>, 'id' | 'endMs'>): void {
    this.exchanges.push({ ...exchange, id: this.#nextId++, endMs: Date.now() });
  }

  async #handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const startMs = Date.now();
    const body = await readAll(req);
    const text = body.toString('utf8');
    const target = String(req.headers['x-amz-target'] ?? '');
    const bodyHash = createHash('sha256').update(body).digest('base64url');
    const covered = this.#faultable(target, text);
    const plan = covered ? this.plan : {};
    const roll = this.#random();
    const throttle = plan.throttle ?? 0;
    const internal = plan.internal ?? 0;

    if (roll < throttle + internal) {
      const kind: FaultKind = roll < throttle ? 'throttle' : 'internal';
      const exception =
        kind === 'internal'
          ? 'InternalServerError'
          : this.#random() < 0.5
            ? 'ProvisionedThroughputExceededException'
            : 'ThrottlingException';
      this.faults.push({ atMs: startMs, target, kind, exception, bodyHash });
      const status = kind === 'internal' ? 500 : 400;
      const note = this.#inspect?.(target, text, status);
      this.#record({
        target,
        startMs,
        outcome: 'injected',
        status,
        bodyHash,
        ...(note ? { note } : {}),
      });
      const answer = JSON.stringify({
        __type: `${NAMESPACE}${exception}`,
        message: `injected by the soak's fault proxy (${kind})`,
      });
      res.writeHead(kind === 'internal' ? 500 : 400, {
        'content-type': 'application/x-amz-json-1.0',
        'content-length': String(Buffer.byteLength(answer)),
        'x-amzn-requestid': `soak-${startMs}-${this.#nextId}`,
      });
      res.end(answer);
      return;
    }
    const drop = isWrite(target) && this.#random() < (plan.dropAfterApplied ?? 0);

    this.#inFlight++;
    let answered: { status: number; headers: IncomingMessage['headers']; body: Buffer };
    try {
      answered = await new Promise((resolve, reject) => {
        const headers = { ...req.headers };
        delete headers.connection;
        const out = httpRequest(
          {
            host: this.#upstream.hostname,
            port: this.#upstream.port,
            method: req.method,
            path: req.url,
            headers,
            agent: this.#agent,
          },
          (upstream) => {
            readAll(upstream).then(
              (data) =>
                resolve({
                  status: upstream.statusCode ?? 0,
                  headers: upstream.headers,
                  body: data,
                }),
              reject,
            );
          },
        );
        out.on('error', reject);
        out.end(body);
      });
    } catch (error) {
      // DynamoDB refused the connection or died mid-request: the caller sees a network error.
      this.#inFlight--;
      const unreached = (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      const note = this.#inspect?.(target, text, 0);
      this.#record({
        target,
        startMs,
        outcome: unreached ? 'unreached' : 'unknown',
        bodyHash,
        ...(note ? { note } : {}),
      });
      res.destroy();
      return;
    }
    this.#inFlight--;
    const note = this.#inspect?.(target, text, answered.status);
    const base = { target, startMs, status: answered.status, bodyHash, ...(note ? { note } : {}) };
    if (drop && answered.status === 200) {
      this.faults.push({
        atMs: Date.now(),
        target,
        kind: 'drop_after_applied',
        body: text,
        bodyHash,
      });
      this.#record({ ...base, outcome: 'dropped' });
      res.destroy();
      return;
    }
    this.#record({ ...base, outcome: answered.status === 200 ? 'applied' : 'refused' });
    const headers = { ...answered.headers };
    delete headers.connection;
    delete headers['transfer-encoding'];
    headers['content-length'] = String(answered.body.length);
    res.writeHead(answered.status, headers);
    res.end(answered.body);
  }
}
