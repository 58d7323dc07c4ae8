/**
 * @sluice/core — the engine: GCRA token buckets and calendar quotas as single conditional
 * DynamoDB updates, multi-scope decisions, and signed, exactly-once leases.
 *
 * Three parts, one folder each: `engine/` decides and settles, `catalog/` holds the stored
 * configuration (plans, entities, resources, settings, prices) and resolves a request against
 * it, `store/` is the table (its layout, and DynamoDB behind the `Store` interface).
 */

// Defaults and errors, shared by all three.
export { canonicalJson, joinKey } from './canonical.js';
// Stored configuration.
export {
  type AuditEntry,
  ConfigAdmin,
  type ConfigAdminOptions,
  type Page,
  type StoredConfig,
  type WriteResult,
} from './catalog/admin.js';
export { type CachedConfigOptions, CachedConfigSource, SETTINGS_NAME } from './catalog/cache.js';
export { CALLER_PATTERN, callerMatches, checkCallers, MAX_CALLERS } from './catalog/callers.js';
export {
  CONFIG_KINDS,
  type ConfigKind,
  type ConfigOf,
  type EntityConfig,
  entitySchema,
  fallbackCycle,
  PLAN_NAME_PATTERN,
  type PlanConfig,
  type PlanLimitInput,
  parseConfig,
  planLimitSchema,
  planSchema,
  priceSchema,
  RESOURCE_PATTERN,
  type ResourceConfig,
  resourceSchema,
  type SettingsConfig,
  settingsSchema,
} from './catalog/documents.js';
export {
  acquireWithFallbacks,
  type FallbackOutcome,
  type FallbackRequest,
  type Tried,
} from './catalog/fallbacks.js';
export {
  authorizeCaller,
  type ConfigSource,
  MAX_DEPTH,
  type Policy,
  type PolicyRequest,
  planFallbacks,
  type Revised,
  resolvePolicy,
} from './catalog/policy.js';
export {
  CACHE_WRITE_METRIC,
  CACHED_INPUT_METRIC,
  costMicroUsd,
  type Decimal,
  forBatch,
  type Price,
  type PriceInput,
  parseDecimal,
  priceFromText,
  priceToText,
  toPrice,
  withCost,
} from './catalog/price.js';
export { matchesResource } from './catalog/scope-checks.js';
export {
  ENGINE_DEFAULTS,
  type EngineTuning,
  MAX_FALLBACKS,
  PRIORITY,
  SERVICE_DEFAULTS,
  signingKeyRetainMs,
} from './defaults.js';
// The engine.
export { acquire } from './engine/acquire.js';
export { available } from './engine/available.js';
export { beforeDeadline } from './engine/budget.js';
export { type CalendarUnit, type CalendarWindow, calendarWindow } from './engine/calendar.js';
export { type Combiner, combineWrites } from './engine/combining.js';
export { MAX_LEASE_ID_LENGTH, type SigningKey } from './engine/lease.js';
export { Limiter } from './engine/limiter.js';
export {
  amountOf,
  type BucketLimit,
  bucketLimitSchema,
  formatPath,
  IDENTIFIER_PATTERN,
  identifierSchema,
  type Limit,
  type LimitInput,
  limitSchema,
  limitsSchema,
  MAX_AMOUNT,
  METRIC_PATTERN,
  metricSchema,
  normalizeLimit,
  PERIOD_SECONDS,
  parseLimits,
  parseUsage,
  parseUsageMap,
  type QuotaLimit,
  quotaLimitSchema,
  STANDARD_METRICS,
  type Usage,
  usageSchema,
  validationErrorFrom,
} from './engine/limits.js';
export { adjust, release, type SettleOptions } from './engine/settle.js';
export { grow, growInBackground, quotaShare, shardingOf } from './engine/shards.js';
export {
  newSigningKey,
  nextRotation,
  type Rotation,
  SigningKeys,
  type SigningKeysOptions,
} from './engine/signing-keys.js';
export { Engine } from './engine/state.js';
export type {
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  LimiterOptions,
  LimitStatus,
  ScopeCheck,
  SettleResult,
  Violation,
} from './engine/types.js';
export type { UsageContext } from './engine/usage-context.js';
export {
  ConflictError,
  DeadlineExceededError,
  LeaseNotFoundError,
  LeaseSettledError,
  NotFoundError,
  PolicyRefusal,
  type RefusalCode,
  SluiceError,
  type SluiceErrorCode,
  StoreUnavailableError,
  ValidationError,
  WriteOutcomeUnknownError,
  WriteRejectedError,
} from './errors.js';
export { own } from './names.js';

// The table.
export {
  DynamoDBStore,
  type DynamoDBStoreOptions,
  throttlingRetries,
  unmarshal as unmarshalItem,
} from './store/dynamodb.js';
export { DynamoDBAdminStore } from './store/dynamodb-admin.js';
export {
  alertAttributes,
  bucketAttributes,
  denialAttributes,
  documentAttributes,
  itemAttributes,
  itemKeys,
  leaseAttributes,
  progressAttributes,
  shardKey,
  shardOf,
  signingKeyAttributes,
  TABLE_SCHEMA,
  TOP_SHARDS,
  USAGE_GRANULARITY,
  type UsageGranularity,
  usageAttributes,
  usageKeys,
} from './store/schema.js';
export { ensureTable } from './store/setup.js';
export type {
  AdminStore,
  Assignment,
  Condition,
  ItemCheck,
  ItemDelete,
  ItemKey,
  ItemState,
  ItemUpdate,
  ItemWrite,
  QueryOptions,
  QueryPage,
  Store,
  TransactResult,
  UpdateResult,
} from './store/types.js';

// Usage history and budget alerts.
export {
  type AggregatorOptions,
  type ApplyReport,
  type Reduction,
  UsageAggregator,
} from './usage/aggregator.js';
export {
  ALERT_EVENT,
  type AlertSender,
  type BudgetAlert,
  CLAIM_MS,
  crossingsOf,
  thresholdLevel,
} from './usage/alerts.js';
export { DenialBuffer, type DenialBufferOptions } from './usage/denials.js';
export {
  changeOf,
  factsOf,
  type ItemChange,
  type LeaseFact,
  type StreamRecord,
} from './usage/facts.js';
export {
  type ListedAlert,
  listAlerts,
  MAX_RANGE_DAYS,
  type TopEntity,
  topEntities,
  type UsagePeriod,
  usageHistory,
} from './usage/history.js';
export { localDate, periodOf, topShard } from './usage/periods.js';
export {
  errorName,
  recordAgeMs,
  type UsageHistoryStatus,
  UsageProgress,
  type UsageProgressOptions,
  usageHistoryStatus,
} from './usage/progress.js';
