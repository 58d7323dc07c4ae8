/**
 * @sluice/core — the engine: GCRA token buckets and calendar quotas as single conditional
 * DynamoDB updates, multi-scope decisions, and signed, exactly-once leases.
 */

export { type CalendarUnit, type CalendarWindow, calendarWindow } from './calendar.js';
export { canonicalJson } from './canonical.js';
export { ENGINE_DEFAULTS, type EngineConfig, signingKeyRetainMs } from './config.js';
export { type CachedConfigOptions, CachedConfigSource, SETTINGS_NAME } from './config-cache.js';
export {
  CONFIG_KINDS,
  type ConfigKind,
  type ConfigOf,
  type EntityConfig,
  entitySchema,
  PLAN_NAME_PATTERN,
  type PlanConfig,
  type PlanLimitInput,
  parseConfig,
  planLimitSchema,
  planSchema,
  RESOURCE_PATTERN,
  type ResourceConfig,
  resourceSchema,
  type SettingsConfig,
  settingsSchema,
} from './config-schema.js';
export {
  type AuditEntry,
  ConfigAdmin,
  type ConfigAdminOptions,
  ConflictError,
  NotFoundError,
  type Page,
  type StoredConfig,
  type WriteResult,
} from './config-store.js';
export { acquire } from './engine/acquire.js';
export { available } from './engine/available.js';
export { Limiter } from './engine/limiter.js';
export { adjust, release } from './engine/settle.js';
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
export {
  LeaseNotFoundError,
  LeaseSettledError,
  SluiceError,
  type SluiceErrorCode,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
export { MAX_LEASE_ID_LENGTH, type SigningKey } from './lease.js';
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
} from './limits.js';
export {
  type ConfigSource,
  MAX_DEPTH,
  matchesResource,
  type Policy,
  PolicyRefusal,
  type PolicyRequest,
  type RefusalCode,
  type Revised,
  resolvePolicy,
} from './policy.js';
export {
  CACHED_INPUT_METRIC,
  costMicroUsd,
  type Decimal,
  type Price,
  type PriceInput,
  parseDecimal,
  priceSchema,
  toPrice,
  withCost,
} from './price.js';
export {
  bucketAttributes,
  itemAttributes,
  itemKeys,
  signingKeyAttributes,
  TABLE_SCHEMA,
} from './schema.js';
export {
  newSigningKey,
  planRotation,
  type Rotation,
  SigningKeys,
  type SigningKeysOptions,
} from './signing-keys.js';
export { DynamoDBStore, type DynamoDBStoreOptions, ensureTable } from './store/dynamodb.js';
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
  QueryPage,
  Store,
  TransactResult,
  UpdateResult,
} from './store/types.js';
