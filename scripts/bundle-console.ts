/**
 * `npm run build` (after the handler bundles): builds the console's static files into
 * packages/console/www/, the folder @sluice/console ships and serves once built.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildConsole } from '@sluice/console/build';

const WWW = fileURLToPath(new URL('../packages/console/www/', import.meta.url));

rmSync(WWW, { recursive: true, force: true });
mkdirSync(WWW, { recursive: true });
for (const file of await buildConsole()) writeFileSync(`${WWW}${file.name}`, file.body);
console.log(`console: ${WWW}`);
