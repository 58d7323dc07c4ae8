/**
 * Sluice for CDK apps: the `Sluice` construct to embed, and `SluiceStack` to deploy as is.
 */
export { HANDLERS_DIR } from './functions.js';
export { Sluice, type SluiceProps } from './sluice.js';
export { SluiceStack } from './stack.js';
