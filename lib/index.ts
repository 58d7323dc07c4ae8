/**
 * Sluice for CDK apps: the `Sluice` construct to embed, and `SluiceStack` to deploy as is.
 */
export { SLUICE_BUNDLING } from './functions.js';
export { Sluice, type SluiceProps } from './sluice.js';
export { SluiceStack } from './stack.js';
