/**
 * @sluice/cli — `npx sluice`: plan and apply a declarative file through the admin API.
 */
export { applyChanges, type Change, planChanges, pruned } from './diff.js';
export { type Desired, FileError, loadFile, parseDesired } from './file.js';
export { main } from './main.js';
