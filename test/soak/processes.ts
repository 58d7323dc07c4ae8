/**
 * The soak's child processes: DynamoDB Local on a data directory and a fixed port (so it can be
 * paused, killed and started again where it was), and `npm start` processes on fixed ports (so
 * one can be killed and started again behind the same address). Every child is registered in
 * one place, so that however the run ends — an error, Ctrl-C, `process.exit` — each is woken
 * (a paused Java ignores everything but SIGKILL and SIGCONT) and killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type DynamoDBLocal, startDynamoDBLocal } from '@sluice/local';

const MAIN = fileURLToPath(new URL('../../packages/local/src/main.ts', import.meta.url));

/** Process ids that must not outlive this process. */
const children = new Set<number>();
/** Every child ever started, to prove at the end that none is left. */
const started = new Set<number>();

/** Sends `signal` to a process that may be gone already. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

/** Wakes and kills every registered child, synchronously (usable in an `exit` handler). */
export function killAllChildren(): void {
  for (const pid of children) {
    signal(pid, 'SIGCONT');
    signal(pid, 'SIGKILL');
  }
  children.clear();
}

process.once('exit', killAllChildren);

/** The children this process started that are still alive (none, after a clean stop). */
export function childrenAlive(): number[] {
  return [...started].filter((pid) => {
    try {
      process.kill(pid, 0);
      // A zombie (exited, not yet reaped) is dead for our purposes.
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  });
}

/** The pid of the DynamoDB Local Java process listening on `port`, started by this process. */
function javaPidOn(port: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const at = args.indexOf('-port');
      if (!args.some((a) => a.endsWith('DynamoDBLocal.jar')) || args[at + 1] !== String(port))
        continue;
      // The fourth field of stat is the parent's pid (the command name before it may hold spaces).
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === process.pid) return Number(entry);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}

/** DynamoDB Local that can be paused, resumed, killed and started again on its data. */
export class DynamoDBLocalProcess {
  #db: DynamoDBLocal | undefined;
  #pid: number | undefined;
  #paused = false;

  constructor(
    readonly port: number,
    readonly dataDir: string,
  ) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#db !== undefined;
  }

  async start(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true });
    this.#db = await startDynamoDBLocal({
      port: this.port,
      dataDir: this.dataDir,
      readyTimeoutMs: 60_000,
    });
    this.#pid = javaPidOn(this.port);
    if (this.#pid === undefined) throw new Error(`no DynamoDB Local process on port ${this.port}`);
    children.add(this.#pid);
    started.add(this.#pid);
  }

  /** SIGSTOP: it holds every connection and answers nothing until resumed. */
  pause(): void {
    if (this.#pid === undefined) return;
    signal(this.#pid, 'SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    if (this.#pid === undefined || !this.#paused) return;
    signal(this.#pid, 'SIGCONT');
    this.#paused = false;
  }

  /** SIGKILL, as a crash: whatever it had not written to its data directory is lost. */
  async kill(): Promise<void> {
    const db = this.#db;
    const pid = this.#pid;
    if (!db || pid === undefined) return;
    this.resume();
    signal(pid, 'SIGKILL');
    await db.stop(); // waits for the exit
    children.delete(pid);
    this.#db = undefined;
    this.#pid = undefined;
  }

  async stop(): Promise<void> {
    const db = this.#db;
    const pid = this.#pid;
    if (!db || pid === undefined) return;
    this.resume();
    await db.stop();
    children.delete(pid);
    this.#db = undefined;
    this.#pid = undefined;
  }
}

/** One `npm start` (packages/local/src/main.ts run from source, as `npm start` runs it). */
export class SluiceProcess {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log: WriteStream;
  /** Every start and every death, with times: the harness's record of this process. */
  readonly events: { atMs: number; what: string }[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    readonly env: Readonly<Record<string, string>>,
    readonly logPath: string,
  ) {
    this.#log = createWriteStream(logPath, { flags: 'a' });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && !this.#child.signalCode;
  }

  /** Starts it and resolves once it says where it listens. */
  async start(timeoutMs = 60_000): Promise<void> {
    this.#log.write(`\n--- ${new Date().toISOString()} start ${this.name} ---\n`);
    const child = spawn(process.execPath, ['--conditions=sluice-source', '--import', 'tsx', MAIN], {
      env: { ...process.env, ...this.env, PORT: String(this.port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) {
      children.add(child.pid);
      started.add(child.pid);
    }
    this.#child = child;
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, sig) => {
        if (child.pid !== undefined) children.delete(child.pid);
        this.events.push({ atMs: Date.now(), what: `exited (${sig ?? code})` });
        this.#log.write(`\n--- ${new Date().toISOString()} exited (${sig ?? code}) ---\n`);
        resolve();
      }),
    );
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name} did not start in ${timeoutMs} ms: ${output.slice(-2_000)}`));
      }, timeoutMs);
      const onData = (chunk: Buffer) => {
        this.#log.write(chunk);
        if (output.length < 20_000) output += chunk.toString();
        if (/listening on http:\/\/127\.0\.0\.1:\d+/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new Error(`${this.name} exited with ${code} while starting: ${output.slice(-2_000)}`),
        );
      });
    });
    this.events.push({ atMs: Date.now(), what: 'started' });
  }

  /** SIGKILL: requests in flight get no answer, its stream reader stops mid-batch. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    this.events.push({ atMs: Date.now(), what: 'SIGKILL sent' });
    child.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGTERM (it stops its server and its stream reader), SIGKILL if it lingers. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child && this.running) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await this.#exited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => this.#log.end(resolve));
  }
}
