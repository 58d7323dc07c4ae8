// Every published package's prepack (npm pack and npm publish run it in the package's folder):
// the build it ships must be there, and the repository's LICENSE goes in beside its README.
//
//   "prepack": "node ../../scripts/prepack.mjs dist/index.js"
//
// Each argument is a file the build makes, relative to the package.
import { copyFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('prepack: name the files the build makes (node scripts/prepack.mjs dist/index.js)');
  process.exit(1);
}
const missing = files.filter((file) => !existsSync(file));
for (const file of missing) {
  console.error(`${file} is missing: run npm run build at the repository root first`);
}
if (missing.length > 0) process.exit(1);
copyFileSync(fileURLToPath(new URL('../LICENSE', import.meta.url)), 'LICENSE');
