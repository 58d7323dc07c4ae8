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
  };
}
