/**
 * A webhook receiver for budget alerts (`SLUICE_ALERT_WEBHOOK`): it records every POST it gets —
 * when, and the parsed body — and answers 204, so a test can count what was delivered.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One delivery, as received. */
export interface Receipt {
  readonly atMs: number;
  readonly body: unknown;
}

export class WebhookReceiver {
  readonly receipts: Receipt[] = [];

  private constructor(private readonly server: Server) {}

  static async start(path = '/alerts'): Promise<WebhookReceiver> {
    const server = createServer();
    const receiver = new WebhookReceiver(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== path) {
          res.writeHead(404).end();
          return;
        }
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = Buffer.concat(chunks).toString('utf8');
        }
        receiver.receipts.push({ atMs: Date.now(), body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  /** The URL to hand to `SLUICE_ALERT_WEBHOOK`. */
  url(path = '/alerts'): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
