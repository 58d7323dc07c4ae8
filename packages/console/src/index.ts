/**
 * @sluice/console — the console's static files and how to serve them: `npm start` serves them
 * at /console beside the API, `npx sluice console` beside its signing proxy. The page calls the
 * API on its own origin (`/v1/…`), so it needs no configuration and no network beyond it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { buildConsole, type ConsoleFile, PAGE, SCRIPT, STYLES } from './build.js';

export type { ConsoleFile } from './build.js';

/** Where the console is served. */
export const CONSOLE_PATH = '/console';

/** An answer for a path under {@link CONSOLE_PATH}. */
export interface ConsoleAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/**
 * What the page may load and reach: its own origin and nothing else, no inline script, no
 * framing. Styles set through the DOM (uPlot sizes its canvas so) are not inline styles.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

const WWW = new URL('../www/', import.meta.url);

/** Whether this module runs from its TypeScript sources (in the repository). */
const FROM_SOURCES = import.meta.url.endsWith('.ts');

/**
 * The console's files: built in memory from the sources in the repository, else read from the
 * `www/` folder the package ships.
 */
export async function consoleFiles(): Promise<readonly ConsoleFile[]> {
  if (FROM_SOURCES || !existsSync(new URL(PAGE, WWW))) return buildConsole();
  const types = new Map([
    [PAGE, 'text/html; charset=utf-8'],
    [SCRIPT, 'text/javascript; charset=utf-8'],
    [STYLES, 'text/css; charset=utf-8'],
  ]);
  return Promise.all(
    [...types].map(async ([name, type]) => ({
      name,
      type,
      body: new Uint8Array(await readFile(new URL(name, WWW))),
    })),
  );
}

/**
 * Serves the console's files: `pathname` is a request's path; the answer is undefined when the
 * path is not the console's. `/console` and `/console/` are the page (the views are in the
 * fragment: `#/entity/acme`); anything else under it that is not one of the files is a 404.
 */
export function consoleServer(
  files: readonly ConsoleFile[],
): (pathname: string) => ConsoleAnswer | undefined {
  const byName = new Map(files.map((file) => [file.name, file]));
  return (pathname) => {
    if (pathname !== CONSOLE_PATH && !pathname.startsWith(`${CONSOLE_PATH}/`)) return undefined;
    const name = pathname.slice(CONSOLE_PATH.length + 1) || PAGE;
    const file = byName.get(name);
    if (!file)
      return {
        status: 404,
        headers: { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS },
        body: new TextEncoder().encode('not found'),
      };
    return {
      status: 200,
      headers: { 'content-type': file.type, ...SECURITY_HEADERS },
      body: file.body,
    };
  };
}
