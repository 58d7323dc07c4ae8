/**
 * Configuration from the environment, read once per container. Fails fast, naming the
 * variable, when something required is missing.
 */

export interface Config {
  /** `SLUICE_TABLE_NAME` (required): the DynamoDB table. */
  readonly tableName: string;
  /** `SLUICE_DYNAMODB_ENDPOINT`: another DynamoDB (DynamoDB Local). @default AWS's regional endpoint */
  readonly dynamodbEndpoint?: string;
  /** `SLUICE_SERVICE`: service name in logs and metrics. @default "sluice" */
  readonly service: string;
  /**
   * `SLUICE_CONFIG_CACHE_MS`: how long a container reuses stored configuration (plans,
   * entities, resources, settings) it has read; a change takes effect within this time.
   * @default 30000
   */
  readonly configCacheMs: number;
  /** `SLUICE_AUDIT_RETENTION_DAYS`: how long admin audit entries are kept. @default 90 */
  readonly auditRetentionDays: number;
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number, not "${raw}"`);
  return value;
}

/** Reads {@link Config} from the environment; throws naming the first missing variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const tableName = env.SLUICE_TABLE_NAME;
  if (!tableName)
    throw new Error('SLUICE_TABLE_NAME is not set: it names the Sluice DynamoDB table');
  return {
    tableName,
    ...(env.SLUICE_DYNAMODB_ENDPOINT ? { dynamodbEndpoint: env.SLUICE_DYNAMODB_ENDPOINT } : {}),
    service: env.SLUICE_SERVICE ?? 'sluice',
    configCacheMs: wholeNumber(env, 'SLUICE_CONFIG_CACHE_MS', 30_000),
    auditRetentionDays: wholeNumber(env, 'SLUICE_AUDIT_RETENTION_DAYS', 90),
  };
}
