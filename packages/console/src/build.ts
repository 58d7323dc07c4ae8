/**
 * Builds the console's static files with esbuild: one script (preact, uPlot and the views), one
 * stylesheet and the page. `npm run build` writes them to `www/` (what the package ships); run
 * from its sources (`npm start` in the repository), the package builds them in memory instead,
 * so the console always shows the sources as they are.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** One static file of the console: its name under the console's path, type and bytes. */
export interface ConsoleFile {
  readonly name: string;
  readonly type: string;
  readonly body: Uint8Array;
}

const APP = new URL('./app/', import.meta.url);

/** The names the page links to: kept in one place with the build that makes them. */
export const SCRIPT = 'console.js';
export const STYLES = 'console.css';
export const PAGE = 'index.html';

/** Builds the console's files (esbuild must be installed: it is a tool of the repository). */
export async function buildConsole(): Promise<ConsoleFile[]> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [
      { in: fileURLToPath(new URL('main.ts', APP)), out: 'console' },
      { in: fileURLToPath(new URL('console.css', APP)), out: 'console' },
    ],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['chrome110', 'firefox110', 'safari16'],
    write: false,
    outdir: 'out',
    legalComments: 'none',
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  const page = await readFile(new URL('index.html', APP));
  const files: ConsoleFile[] = [{ name: PAGE, type: 'text/html; charset=utf-8', body: page }];
  for (const output of result.outputFiles) {
    if (output.path.endsWith('.js'))
      files.push({ name: SCRIPT, type: 'text/javascript; charset=utf-8', body: output.contents });
    else if (output.path.endsWith('.css'))
      files.push({ name: STYLES, type: 'text/css; charset=utf-8', body: output.contents });
  }
  return files;
}
