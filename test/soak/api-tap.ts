/**
 * A recording pass-through in front of one Sluice server. Clients talk to the tap as they would
 * to the server; the tap forwards each request and records what the server answered and when —
 * also when the client gave up first (its deadline passed): the tap keeps waiting for the
 * server's answer, as API Gateway lets a Lambda run on after its caller left. So an oracle
 * knows what the server decided for every request the clients sent, including acquires whose
 * admission the client never heard of. When the server cannot be reached (killed, restarting),
 * the tap drops the client's connection, as a refused connection would.
 */
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request as the tap forwarded it. */
export interface TapRequest {
  readonly method: string;
  readonly path: string;
  readonly body: string;
}

/** The server's answer. */
export interface TapAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface TapExchange<T> {
  readonly id: number;
  readonly method: string;
  readonly path: string;
  /** When the tap had the whole request and sent it on. */
  readonly startMs: number;
  /** When the server's answer (or the failure to reach it) came. */
  readonly endMs: number;
  /** The server's status; absent when it never answered. */
  readonly status?: number;
  /** Why there is no answer (connection refused, reset). */
  readonly error?: string;
  /** The client had gone before the answer came (it never saw it). */
  readonly clientGone: boolean;
  readonly note?: T;
}

export interface ApiTapOptions<T> {
  /** The server's base URL. */
  readonly upstream: string;
  /** Keeps what an oracle needs of an exchange; `answer` is absent when the server never answered. */
  readonly inspect?: (request: TapRequest, answer: TapAnswer | undefined) => T | undefined;
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

export class ApiTap<T = never> {
  readonly exchanges: TapExchange<T>[] = [];
  #inFlight = 0;
  #nextId = 0;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 256 });
  readonly #upstream: URL;
  readonly #inspect: ApiTapOptions<T>['inspect'];

  private constructor(
    private readonly server: Server,
    options: ApiTapOptions<T>,
  ) {
    this.#upstream = new URL(options.upstream);
    this.#inspect = options.inspect;
  }

  static async start<T = never>(options: ApiTapOptions<T>): Promise<ApiTap<T>> {
    const server = createServer();
    const tap = new ApiTap<T>(server, options);
    server.on('request', (req, res) => {
      tap.#handle(req, res).catch(() => res.destroy());
    });
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return tap;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Requests sent on and not yet answered by the server. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.#agent.destroy();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = (await readAll(req)).toString('utf8');
    const startMs = Date.now();
    const request: TapRequest = { method: req.method ?? 'GET', path: req.url ?? '/', body };
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = true;
    });
    this.#inFlight++;
    let answer: TapAnswer | undefined;
    let error: string | undefined;
    try {
      answer = await new Promise<TapAnswer>((resolve, reject) => {
        const headers = { ...req.headers, host: this.#upstream.host };
        delete headers.connection;
        const out = httpRequest(
          {
            host: this.#upstream.hostname,
            port: this.#upstream.port,
            method: request.method,
            path: request.path,
            headers,
            agent: this.#agent,
          },
          (upstream) => {
            readAll(upstream).then(
              (data) =>
                resolve({
                  status: upstream.statusCode ?? 0,
                  headers: upstream.headers,
                  body: data.toString('utf8'),
                }),
              reject,
            );
          },
        );
        out.on('error', reject);
        out.end(body);
      });
    } catch (caught) {
      error = (caught as NodeJS.ErrnoException).code ?? String(caught);
    }
    this.#inFlight--;
    const note = this.#inspect?.(request, answer);
    this.exchanges.push({
      id: this.#nextId++,
      method: request.method,
      path: request.path,
      startMs,
      endMs: Date.now(),
      ...(answer ? { status: answer.status } : {}),
      ...(error ? { error } : {}),
      clientGone: gone,
      ...(note !== undefined ? { note } : {}),
    });
    if (!answer || gone || res.destroyed) {
      res.destroy();
      return;
    }
    const headers = { ...answer.headers };
    delete headers.connection;
    delete headers['transfer-encoding'];
    headers['content-length'] = String(Buffer.byteLength(answer.body));
    res.writeHead(answer.status, headers);
    res.end(answer.body);
  }
}
