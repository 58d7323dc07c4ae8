/**
 * @sluice/client — ask Sluice before an LLM call, report after it.
 * Token estimation lives in `@sluice/client/estimate` (it carries the tokenizer).
 */
export {
  type AuditEntry,
  COLLECTIONS,
  type ConfigKind,
  SluiceAdmin,
  type SluiceAdminOptions,
  type StoredConfig,
} from './admin.js';
export { LeaseStream, SluiceClient, type SluiceClientOptions } from './client.js';
export { SluiceClientError, type SluiceClientErrorCode, SluiceRequestError } from './errors.js';
export {
  type ProviderAttempt,
  parseDuration,
  providerRetryAfterMs,
  withProviderBackoff,
} from './provider.js';
export type { Credentials } from './signing.js';
export type {
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  LimitInput,
  LimitSpec,
  LimitState,
  LimitStatus,
  SettleResult,
  Usage,
  Violation,
} from './types.js';
