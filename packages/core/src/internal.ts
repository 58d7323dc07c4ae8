/**
 * @sluice/core/internal: what Sluice's own packages (the Lambda handlers, the local server, the
 * CLI, the CDK construct) and its tests, scripts and benchmarks import from the engine beyond
 * its public surface (index.ts): the operations standing alone on a process's
 * {@link EngineState}, stored configuration's schemas and policy resolution, the table's layout,
 * the usage aggregator's parts. A name is here only while one of them imports it.
 *
 * Not for users: these names change without notice, in any release. The second section of
 * api/core.api.md lists them, so a change to them is seen in review.
 */

// Shared by all three parts.
export { canonicalJson, joinKey } from './canonical.js';
// Stored configuration.
export { checkAlertedItems } from './catalog/alerted-items.js';
export { CachedConfigSource, SETTINGS_NAME } from './catalog/cache.js';
export { CALLER_PATTERN, callerMatches, checkCallers } from './catalog/callers.js';
export { UNSTORED_SETTINGS_TAG } from './catalog/conditions.js';
export {
  CONFIG_KINDS,
  type ConfigKind,
  entitySchema,
  fallbackCycle,
  planSchema,
  resourceSchema,
  settingsSchema,
} from './catalog/documents.js';
export { acquireWithFallbacks, type Tried } from './catalog/fallbacks.js';
export {
  authorizeCaller,
  type ConfigSource,
  type Policy,
  resolvePolicy,
} from './catalog/policy.js';
export {
  costMicroUsd,
  forBatch,
  parseDecimal,
  priceFromText,
  priceToText,
} from './catalog/price.js';
export {
  ENGINE_DEFAULTS,
  MAX_FALLBACKS,
  PRIORITY,
  SERVICE_DEFAULTS,
  signingKeyRetainMs,
} from './defaults.js';
// The engine: its operations on a process's memory, and the limits' schemas.
export { available } from './engine/available.js';
export { beforeDeadline, orAfter } from './engine/budget.js';
export { calendarWindow } from './engine/calendar.js';
export { combineWrites } from './engine/combining.js';
export { grow, growInBackground } from './engine/growth.js';
export { leaseContextOf, MAX_LEASE_ID_LENGTH } from './engine/lease.js';
export {
  type BucketLimit,
  identifierSchema,
  limitsSchema,
  metricSchema,
  normalizeLimit,
  PERIOD_SECONDS,
  parseUsage,
  parseUsageMap,
  type QuotaLimit,
  usageSchema,
  validationErrorFrom,
} from './engine/limits.js';
export { adjust, release } from './engine/settle.js';
export { EngineState } from './engine/state.js';
export { PolicyRefusal } from './errors.js';
export { own } from './names.js';
export { FILTER_SCAN_AT_MOST, queryWhere } from './store/cursor.js';
// The table.
export {
  bucketAttributes,
  itemAttributes,
  progressAttributes,
  shardKey,
  signingKeyAttributes,
  TABLE_SCHEMA,
  TOP_SHARDS,
  type UsageGranularity,
  usageKeys,
} from './store/schema.js';
export type {
  Assignment,
  Condition,
  ItemCheck,
  ItemState,
  ItemUpdate,
  TransactResult,
  UpdateResult,
} from './store/types.js';
export { thresholdLevel } from './usage/alert-levels.js';
// Usage history and budget alerts.
export {
  ALERT_EVENT,
  type AlertSender,
  type BudgetAlert,
  CLAIM_MS,
  crossingsOf,
} from './usage/alerts.js';
export {
  added,
  BOARD_BYTES,
  BOARD_SHARDS,
  type Board,
  type BoardEntry,
  type BoardPart,
  boardKey,
  boardOf,
  boardWrite,
  EMPTY_BOARD,
  topOf,
} from './usage/boards.js';
export { DenialBuffer } from './usage/denials.js';
export {
  type Contribution,
  contributionsOf,
  type ItemChange,
  type StreamPosition,
  type StreamRecord,
} from './usage/facts.js';
export { MAX_RANGE_DAYS } from './usage/history.js';
export {
  addDeltas,
  boardsFor,
  hourRow,
  localDate,
  periodOf,
  ROLLUP_ENTITY,
  type RowDelta,
  type RowWrite,
  rowAssignments,
  topShard,
} from './usage/periods.js';
export { errorName, recordAgeMs, UsageProgress, usageHistoryStatus } from './usage/progress.js';
