/**
 * @sluice/cli — `npx sluice`: plan and apply a declarative file through the admin API.
 */
export { applyChanges, type Change, planChanges, pruned } from './diff.js';
export { CliError, type CliErrorCode, FileError, UsageError } from './errors.js';
export { type Desired, loadFile, parseDesired } from './file.js';
export { main } from './main.js';
