/**
 * @sluice/client — ask Sluice before an LLM call, report after it.
 * Token estimation lives in `@sluice/client/estimate` (it carries the tokenizer), the middy
 * middleware in `@sluice/client/middy`, the mapping of HTTP API bodies in `@sluice/client/wire`.
 */
export {
  type AuditEntry,
  type BudgetAlert,
  COLLECTIONS,
  type ConfigKind,
  type EntryPage,
  type Page,
  SluiceAdmin,
  type SluiceAdminOptions,
  type StoredConfig,
  type TopEntities,
  type TopQuery,
  type WriteCondition,
} from './admin.js';
export { LeaseStream, SluiceClient, type SluiceClientOptions } from './client.js';
export {
  SluiceClientError,
  type SluiceClientErrorCode,
  type SluiceProblemCode,
  SluiceRequestError,
} from './errors.js';
export {
  type ProviderAttempt,
  parseDuration,
  providerRetryAfterMs,
  withProviderBackoff,
} from './provider.js';
export type { Credentials } from './signing.js';
export type {
  AcquireRefusalCode,
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  KnownAcquireRefusalCode,
  LimitInput,
  LimitSpec,
  LimitState,
  LimitStatus,
  Listing,
  SettleResult,
  Usage,
  UsageHistory,
  UsagePeriod,
  UsageQuery,
  Violation,
} from './types.js';
export {
  type AnthropicUsage,
  type BedrockUsage,
  fromAnthropic,
  fromBedrock,
  fromOpenAI,
  type OpenAIUsage,
} from './usage.js';
