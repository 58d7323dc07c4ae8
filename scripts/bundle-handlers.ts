/**
 * `npm run build` (after `tsc -b`): bundles every Lambda handler into lib/handlers/<function>/
 * (index.mjs and its source map). The construct deploys these files as they are: an app that
 * embeds `Sluice` needs neither esbuild nor Docker nor Sluice's sources to synthesize, and the
 * bundle the tests size and run is byte for byte the one Lambda runs.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AGGREGATOR_ENTRY, functionsOf, type Route, routes } from '@sluice/lambdas/routes';
import { type BuildOptions, build } from 'esbuild';

/** Where the bundles go: the folder @sluice/cdk ships. */
export const HANDLERS_DIR = fileURLToPath(new URL('../lib/handlers/', import.meta.url));

const REQUIRE_BANNER =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

/** Every function and the file its handler is in. */
export function handlerEntries(): Map<string, string> {
  const entries = new Map<string, string>();
  for (const [name, served] of functionsOf(routes))
    entries.set(name, fileURLToPath((served[0] as Route).entry));
  entries.set('aggregator', fileURLToPath(AGGREGATOR_ENTRY));
  return entries;
}

/** Bundles them all; returns each bundle's size in bytes. */
export async function bundleHandlers(out = HANDLERS_DIR): Promise<Map<string, number>> {
  rmSync(out, { recursive: true, force: true });
  const sizes = new Map<string, number>();
  await Promise.all(
    [...handlerEntries()].map(async ([name, entry]) => {
      mkdirSync(`${out}/${name}`, { recursive: true });
      const options = {
        entryPoints: [entry],
        outfile: `${out}/${name}/index.mjs`,
        bundle: true,
        minify: true,
        sourcemap: true,
        sourcesContent: false, // stack traces need the mappings only
        legalComments: 'none',
        charset: 'utf8',
        platform: 'node',
        target: 'node22',
        format: 'esm',
        mainFields: ['module', 'main'],
        conditions: ['sluice-source', 'module'],
        // The AWS SDK v3 is in the Node.js 22 runtime, so it stays out of the bundle. So does
        // @opentelemetry/api: the handlers load it at run time only if it is there (the ADOT
        // Lambda layer provides it, on NODE_PATH), and record OpenTelemetry metrics then.
        external: ['@aws-sdk/*', '@opentelemetry/api'],
        metafile: true,
        logLevel: 'warning',
      } satisfies BuildOptions;
      let result = await build(options);
      // A CommonJS package inside an ESM bundle needs a `require`: give it one where it does.
      if (readFileSync(options.outfile, 'utf8').includes('Dynamic require of')) {
        result = await build({ ...options, banner: { js: REQUIRE_BANNER } });
      }
      const output =
        result.metafile.outputs[
          Object.keys(result.metafile.outputs).find((f) => f.endsWith('.mjs')) as string
        ];
      sizes.set(name, output?.bytes ?? 0);
    }),
  );
  return sizes;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const sizes = await bundleHandlers();
  for (const [name, bytes] of [...sizes].sort(([a], [b]) => a.localeCompare(b)))
    console.log(`${name.padEnd(12)} ${(bytes / 1024).toFixed(1).padStart(6)} KB`);
}
