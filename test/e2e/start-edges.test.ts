/**
 * `npm start` under hostile use: environment variables it documents with bad values, and a stop
 * while it is still starting.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../../packages/local/src/main.ts', import.meta.url));

/** `npm start` as a process of its own, with `env` on top of this one's. */
function start(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ['--conditions=sluice-source', '--import', 'tsx', MAIN], {
    env: { ...process.env, PORT: '0', POWERTOOLS_LOG_LEVEL: 'SILENT', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  return { child, output: () => output };
}

/** How it ended, or 'running' if it still serves after `ms`. */
function ending(child: ChildProcess, ms: number): Promise<number | 'running'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('running'), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}

/** The processes whose parent is `pid` (Linux: from /proc). */
function childrenOf(pid: number): { pid: number; command: string }[] {
  return readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry)) return [];
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) return [];
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      return [{ pid: Number(entry), command }];
    } catch {
      return [];
    }
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start under hostile use', () => {
  it('refuses to start on a bad value of any variable it documents, naming it', async () => {
    const bad = {
      SLUICE_AUDIT_RETENTION_DAYS: 'ninety',
      SLUICE_OTEL_ENTITY_ATTRIBUTE: 'yes',
      PORT: '0x10', // Number() reads it as 16
    };
    for (const [name, value] of Object.entries(bad)) {
      const server = start({
        DYNAMODB_ENDPOINT: inject('dynamoEndpoint'),
        SLUICE_TABLE_NAME: 'start-edges',
        [name]: value,
      });
      const code = await ending(server.child, 20_000);
      if (code === 'running') server.child.kill('SIGTERM');
      expect({ name, code }).toEqual({ name, code: expect.any(Number) });
      expect(code).not.toBe(0);
      expect(server.output()).toContain(name);
    }
  }, 60_000);

  it('leaves no Java process when stopped while it starts', async () => {
    const server = start({ SLUICE_TABLE_NAME: 'start-edges' });
    const pid = server.child.pid as number;
    let java: number | undefined;
    for (let i = 0; i < 300 && java === undefined; i++) {
      java = childrenOf(pid).find((p) => /java|DynamoDBLocal/.test(p.command))?.pid;
      if (java === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(java).toBeDefined();
    const ended = ending(server.child, 15_000);
    server.child.kill('SIGTERM');
    expect(await ended).not.toBe('running');
    const orphan = java as number;
    try {
      await expect.poll(() => alive(orphan), { timeout: 8_000 }).toBe(false);
    } finally {
      if (alive(orphan)) process.kill(orphan, 'SIGKILL'); // left by the server: this test's own
    }
  }, 60_000);
});
