/**
 * Sluice for CDK apps: the `Sluice` construct to embed, and `SluiceStack` to deploy as is.
 */
export { SLUICE_BUNDLING, Sluice, type SluiceProps, SluiceStack } from './sluice.js';
