/**
 * @sluice/core — the engine: GCRA token buckets and calendar quotas as single conditional
 * DynamoDB updates, multi-scope decisions, and signed, exactly-once leases.
 *
 * Three parts, one folder each: `engine/` decides and settles, `catalog/` holds the stored
 * configuration (plans, entities, resources, settings, prices) and resolves a request against
 * it, `store/` is the table (its layout, and DynamoDB behind the `Store` interface).
 *
 * This entry point is the surface kept for users who embed the engine (docs/sdk.md, "Without
 * HTTP"): `Limiter` and what it is asked and answers, the stored configuration's `ConfigAdmin`,
 * the table (`DynamoDBStore`, `DynamoDBAdminStore`, `ensureTable`), the errors, and usage history.
 * Every name is there on purpose, and api/core.api.md lists them (test/unit/api-report.test.ts).
 * What Sluice's own packages need beyond it is in `@sluice/core/internal` (internal.ts), which
 * is not for users and changes without notice.
 */

// Stored configuration.
export { ConfigAdmin, type ConfigAdminOptions, type StoredConfig } from './catalog/admin.js';
export { entityTag, type WriteCondition } from './catalog/conditions.js';
export {
  type EntityConfig,
  type PlanConfig,
  parseConfig,
  type ResourceConfig,
  type SettingsConfig,
} from './catalog/documents.js';
export { type Price, toPrice } from './catalog/price.js';
// The engine.
export { Limiter } from './engine/limiter.js';
export { type Limit, type LimitInput, parseLimits, type Usage } from './engine/limits.js';
export type { SettleOptions } from './engine/settle.js';
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
// Errors: expected outcomes are values; these are misuse and infrastructure failures.
export {
  ConflictError,
  DeadlineExceededError,
  LeaseNotFoundError,
  LeaseSettledError,
  NotFoundError,
  PreconditionFailedError,
  SluiceError,
  type SluiceErrorCode,
  StoreUnavailableError,
  ValidationError,
  WriteOutcomeUnknownError,
  WriteRejectedError,
} from './errors.js';
// The table.
export {
  DynamoDBStore,
  type DynamoDBStoreOptions,
  storeRequestHandler,
  throttlingRetries,
} from './store/dynamodb.js';
export { DynamoDBAdminStore } from './store/dynamodb-admin.js';
export { itemKeys } from './store/schema.js';
export { ensureTable } from './store/setup.js';
export type { AdminStore, ItemKey, Store } from './store/types.js';
// Usage history, filled from the table's stream by the aggregator.
export { type AggregatorOptions, UsageAggregator } from './usage/aggregator.js';
export { changeOf } from './usage/facts.js';
export { listAlerts, topEntities, usageHistory } from './usage/history.js';
