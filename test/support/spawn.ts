/**
 * Runs `packages/local/src/main.ts` — what `npm start` runs — as a process of its own, and says
 * where it listens. No vitest here: the load test (`npm run load`) uses it outside the runner.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../packages/local/src/main.ts', import.meta.url));

export interface LocalServer {
  readonly url: string;
  /** Everything the server has written to stdout and stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts the local API on a free port with `env` on top of this process's environment: the
 * sources, as `npm start` runs them, or `args` (a built `sluice-local`, say) with plain node.
 */
export async function spawnLocalServer(
  env: Record<string, string>,
  startTimeoutMs = 30_000,
  args: readonly string[] = ['--conditions=sluice-source', '--import', 'tsx', MAIN],
): Promise<LocalServer> {
  const child: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, PORT: '0', POWERTOOLS_LOG_LEVEL: 'SILENT', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the API did not start: ${output}`)),
      startTimeoutMs,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the API exited with ${code}: ${output}`));
    });
  });
  return {
    url,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
