/**
 * A proxy in front of DynamoDB Local that holds back the answers of chosen requests: each is
 * forwarded and applied at once, and answered late, or never (a connection that hangs).
 */
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SlowProxy {
  readonly url: string;
  /** The next `count` requests whose body matches: forwarded at once, answered after `ms` (Infinity: never). */
  hold(body: RegExp, ms: number, count?: number): void;
  /** Requests held so far. */
  held(): number;
  /** Requests sent so far whose operation (`X-Amz-Target`, e.g. `GetRecords`) matches. */
  sent(operation: RegExp): number;
  close(): Promise<void>;
}

export async function startSlowProxy(upstream: string): Promise<SlowProxy> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true });
  let rule: { body: RegExp; ms: number; count: number } | undefined;
  let held = 0;
  const operations: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    operations.push(String(req.headers['x-amz-target'] ?? ''));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let delay = 0;
      if (rule && rule.count > 0 && rule.body.test(body.toString())) {
        rule.count -= 1;
        held += 1;
        delay = rule.ms;
      }
      const up = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent,
        },
        (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (c: Buffer) => parts.push(c));
          answer.on('end', () => {
            const send = () => {
              res.writeHead(answer.statusCode ?? 500, answer.headers);
              res.end(Buffer.concat(parts));
            };
            if (delay === 0) return send();
            if (delay === Number.POSITIVE_INFINITY) return; // never answered
            const t = setTimeout(() => {
              timers.delete(t);
              send();
            }, delay);
            timers.add(t);
          });
        },
      );
      up.on('error', () => req.socket.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: (body, ms, count = 1) => {
      rule = { body, ms, count };
    },
    held: () => held,
    sent: (operation) => operations.filter((o) => operation.test(o)).length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
