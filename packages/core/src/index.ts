/**
 * @sluice/core — the engine: GCRA token buckets and calendar quotas as single conditional
 * DynamoDB updates, multi-scope decisions, and signed, exactly-once leases.
 */
export { type CalendarUnit, type CalendarWindow, calendarWindow } from './calendar.js';
export { ENGINE_DEFAULTS, type EngineConfig } from './config.js';
export {
  LeaseNotFoundError,
  LeaseSettledError,
  SluiceError,
  type SluiceErrorCode,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
export {
  type AcquireRequest,
  type AcquireResult,
  type AvailableResult,
  Limiter,
  type LimiterOptions,
  type LimitStatus,
  type ScopeCheck,
  type SettleResult,
  type Violation,
} from './limiter.js';
export {
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
  type QuotaLimit,
  quotaLimitSchema,
  STANDARD_METRICS,
  type Usage,
  usageSchema,
  validationErrorFrom,
} from './limits.js';
export { bucketAttributes, itemKeys, TABLE_SCHEMA } from './schema.js';
export { DynamoDBStore, type DynamoDBStoreOptions, ensureTable } from './store/dynamodb.js';
export type {
  ItemKey,
  ItemState,
  ItemUpdate,
  Store,
  TransactResult,
  UpdateResult,
} from './store/types.js';
