/**
 * Starts the local API exactly as `npm start` does, as its own process, pointed at the run's
 * DynamoDB Local (so it starts no Java) and at a table of the caller's choosing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, inject } from 'vitest';

const MAIN = fileURLToPath(new URL('../../packages/local/src/main.ts', import.meta.url));

export interface Api {
  readonly url: string;
  readonly tableName: string;
  stop(): Promise<void>;
}

export function tableName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function startApi(table: string, env: Record<string, string> = {}): Promise<Api> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: {
      ...process.env,
      PORT: '0',
      DYNAMODB_ENDPOINT: inject('dynamoEndpoint'),
      SLUICE_TABLE_NAME: table,
      POWERTOOLS_LOG_LEVEL: 'SILENT',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the API did not start: ${output}`)), 30_000);
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
    tableName: table,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * One HTTP request as a black-box client sends it: a JSON body (or a string sent as is, with
 * `contentType`), and the answer's status, headers and body (parsed JSON, the text when it is
 * not JSON, `{}` when empty).
 */
export async function request(
  method: string,
  url: string,
  body?: unknown,
  contentType = 'application/json',
) {
  const res = await fetch(url, {
    method,
    ...(body === undefined
      ? {}
      : {
          headers: { 'content-type': contentType },
          body: typeof body === 'string' ? body : JSON.stringify(body),
        }),
  });
  const text = await res.text();
  let parsed: unknown = {};
  try {
    if (text) parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed as Record<string, unknown> };
}

/** POSTs JSON and returns status, headers and the parsed body. */
export function post(url: string, body: unknown, contentType = 'application/json') {
  return request('POST', url, body, contentType);
}

/**
 * A local API on a table of its own for the calling test file: started before its tests,
 * stopped after them. Its `url` is there once the tests run.
 */
export function fileApi(
  prefix: string,
  env: Record<string, string> = {},
): { readonly url: string } {
  let api: Api | undefined;
  beforeAll(async () => {
    api = await startApi(tableName(prefix), env);
  });
  afterAll(async () => {
    await api?.stop();
  });
  return {
    get url() {
      if (!api) throw new Error('the API has not started (use it inside a test)');
      return api.url;
    },
  };
}
