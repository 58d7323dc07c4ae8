/**
 * Starts the local API exactly as `npm start` does, as its own process, pointed at the run's
 * DynamoDB Local (so it starts no Java) and at a table of the caller's choosing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, inject } from 'vitest';
import { expectDescribed } from './openapi.js';
import { spawnLocalServer } from './spawn.js';

export interface Api {
  readonly url: string;
  readonly tableName: string;
  /** Everything the server has written to stdout and stderr so far (its logs). */
  output(): string;
  stop(): Promise<void>;
}

export function tableName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function startApi(table: string, env: Record<string, string> = {}): Promise<Api> {
  const server = await spawnLocalServer({
    DYNAMODB_ENDPOINT: inject('dynamoEndpoint'),
    SLUICE_TABLE_NAME: table,
    ...env,
  });
  return { ...server, tableName: table };
}

/**
 * One HTTP request as a black-box client sends it: a JSON body (or a string sent as is, with
 * `contentType`) and any other `headers`, and the answer's status, headers and body (parsed JSON, the text when it is
 * not JSON, `{}` when empty). Every answer is checked against docs/openapi.json: one it does not
 * describe fails the test, naming the route, the status and what differs (see openapi.ts).
 */
export async function request(
  method: string,
  url: string,
  body?: unknown,
  contentType = 'application/json',
  headers: Record<string, string> = {},
) {
  const res = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': contentType }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  expectDescribed({ method, url, status: res.status, headers: res.headers, text });
  let parsed: unknown = {};
  try {
    if (text) parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed as Record<string, unknown> };
}

/** Runs `use` against a local API on a new table of its own, and stops the API after it. */
export async function withNewTable<T>(
  prefix: string,
  use: (api: Api, table: string) => Promise<T>,
): Promise<T> {
  const table = tableName(prefix);
  const api = await startApi(table);
  try {
    return await use(api, table);
  } finally {
    await api.stop();
  }
}

/** POSTs JSON and returns status, headers and the parsed body. */
export function post(url: string, body: unknown, contentType = 'application/json') {
  return request('POST', url, body, contentType);
}

/**
 * A local API on a table of its own for the calling test file (or `describe` block): started
 * before its tests, stopped after them. Its `url`, `tableName` and `output()` are there once the
 * tests run.
 */
export function fileApi(prefix: string, env: Record<string, string> = {}): Omit<Api, 'stop'> {
  let api: Api | undefined;
  beforeAll(async () => {
    api = await startApi(tableName(prefix), env);
  });
  afterAll(async () => {
    await api?.stop();
  });
  const started = (): Api => {
    if (!api) throw new Error('the API has not started (use it inside a test)');
    return api;
  };
  return {
    get url() {
      return started().url;
    },
    get tableName() {
      return started().tableName;
    },
    output: () => started().output(),
  };
}
