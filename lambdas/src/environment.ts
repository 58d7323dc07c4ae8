/**
 * The functions' environment: the variables' names (the construct sets them, the local server
 * and the handlers read them) and the loader that reads them once per container, failing fast
 * and naming the variable when something required is missing.
 */
import { ENGINE_DEFAULTS, own, SERVICE_DEFAULTS } from '@sluice/core/internal';
import { EnvironmentError } from './errors.js';

/** The environment variables every Sluice function reads. */
export const ENV = {
  /** (required) The DynamoDB table. */
  tableName: 'SLUICE_TABLE_NAME',
  /** Another DynamoDB (DynamoDB Local). @default AWS's regional endpoint */
  dynamodbEndpoint: 'SLUICE_DYNAMODB_ENDPOINT',
  /** Service name in logs and metrics. @default {@link SERVICE_DEFAULTS.serviceName} */
  service: 'SLUICE_SERVICE',
  /** How long a container reuses stored configuration (ms). @default {@link SERVICE_DEFAULTS.configCacheMs} */
  configCacheMs: 'SLUICE_CONFIG_CACHE_MS',
  /** How long a container gathers refusals before writing them (ms). @default {@link SERVICE_DEFAULTS.denialFlushMs} */
  denialFlushMs: 'SLUICE_DENIAL_FLUSH_MS',
  /**
   * Consuming writes per second to one shard at which a scope with `max_shards` doubles its
   * shards. @default {@link ENGINE_DEFAULTS.shardGrowWritesPerSecond}
   */
  shardGrowWritesPerSecond: 'SLUICE_SHARD_GROW_WRITES_PER_SECOND',
} as const;

/**
 * What the admin function alone reads (apart from {@link ENV}, so that the other functions'
 * bundles leave the names out, as they leave out the loader).
 */
export const ADMIN_ENV = {
  /** How long admin audit entries are kept (days). @default {@link SERVICE_DEFAULTS.auditRetentionDays} */
  auditRetentionDays: 'SLUICE_AUDIT_RETENTION_DAYS',
} as const;

/** What the usage aggregator alone reads. */
export const AGGREGATOR_ENV = {
  /** How long usage history is kept (days). @default {@link SERVICE_DEFAULTS.usageRetentionDays} */
  usageRetentionDays: 'SLUICE_USAGE_RETENTION_DAYS',
  /** The EventBridge bus budget alerts go to. @default none: alerts are only listed */
  eventBus: 'SLUICE_EVENT_BUS',
} as const;

/**
 * Powertools' own variables, which the construct and the local server set (apart from
 * {@link ENV} so that handler bundles, which never read them, leave them out).
 */
export const POWERTOOLS_ENV = {
  service: 'POWERTOOLS_SERVICE_NAME',
  logLevel: 'POWERTOOLS_LOG_LEVEL',
  namespace: 'POWERTOOLS_METRICS_NAMESPACE',
  metricsDisabled: 'POWERTOOLS_METRICS_DISABLED',
} as const;

/** The environment every handler uses. */
export interface Environment {
  readonly tableName: string;
  readonly dynamodbEndpoint?: string;
  readonly service: string;
  /**
   * How long a container reuses stored configuration (plans, entities, resources, settings) it
   * has read; a change takes effect within this time.
   */
  readonly configCacheMs: number;
  readonly denialFlushMs: number;
  readonly shardGrowWritesPerSecond: number;
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = own(env, name);
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    throw new EnvironmentError(`${name} must be a whole number, not "${raw}"`);
  return value;
}

/** The service name, which the logger and metrics need before anything else is read. */
export const serviceName = (env: NodeJS.ProcessEnv = process.env): string =>
  env[ENV.service] ?? SERVICE_DEFAULTS.serviceName;

/**
 * Reads the {@link Environment}; throws naming the first missing variable. (What one function
 * alone reads has its own loader, so the others neither carry nor check it.)
 */
export function loadEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const tableName = env[ENV.tableName];
  if (!tableName)
    throw new EnvironmentError(`${ENV.tableName} is not set (the Sluice table's name)`);
  const endpoint = env[ENV.dynamodbEndpoint];
  return {
    tableName,
    ...(endpoint ? { dynamodbEndpoint: endpoint } : {}),
    service: serviceName(env),
    configCacheMs: wholeNumber(env, ENV.configCacheMs, SERVICE_DEFAULTS.configCacheMs),
    denialFlushMs: wholeNumber(env, ENV.denialFlushMs, SERVICE_DEFAULTS.denialFlushMs),
    shardGrowWritesPerSecond: wholeNumber(
      env,
      ENV.shardGrowWritesPerSecond,
      ENGINE_DEFAULTS.shardGrowWritesPerSecond,
    ),
  };
}

/** How long the admin function keeps audit entries (days). */
export const auditRetentionDays = (env: NodeJS.ProcessEnv = process.env): number =>
  wholeNumber(env, ADMIN_ENV.auditRetentionDays, SERVICE_DEFAULTS.auditRetentionDays);

/** What the usage aggregator reads: how long it keeps history, and where alerts go. */
export function aggregatorEnvironment(env: NodeJS.ProcessEnv = process.env): {
  readonly usageRetentionDays: number;
  readonly eventBus?: string;
} {
  const eventBus = env[AGGREGATOR_ENV.eventBus];
  return {
    usageRetentionDays: wholeNumber(
      env,
      AGGREGATOR_ENV.usageRetentionDays,
      SERVICE_DEFAULTS.usageRetentionDays,
    ),
    ...(eventBus ? { eventBus } : {}),
  };
}
