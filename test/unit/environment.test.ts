import { ENGINE_DEFAULTS, SERVICE_DEFAULTS } from '@sluice/core/internal';
import {
  ADMIN_ENV,
  AGGREGATOR_ENV,
  aggregatorEnvironment,
  auditRetentionDays,
  ENV,
  loadEnvironment,
} from '@sluice/lambdas/environment';
import { describe, expect, it } from 'vitest';

describe('the functions’ environment', () => {
  it('takes every default from core', () => {
    expect(loadEnvironment({ [ENV.tableName]: 't' })).toEqual({
      tableName: 't',
      service: SERVICE_DEFAULTS.serviceName,
      configCacheMs: SERVICE_DEFAULTS.configCacheMs,
      denialFlushMs: SERVICE_DEFAULTS.denialFlushMs,
      shardGrowWritesPerSecond: ENGINE_DEFAULTS.shardGrowWritesPerSecond,
    });
    expect(auditRetentionDays({})).toBe(SERVICE_DEFAULTS.auditRetentionDays);
    expect(aggregatorEnvironment({})).toEqual({
      usageRetentionDays: SERVICE_DEFAULTS.usageRetentionDays,
    });
  });

  it('reads what is set, and names the variable it cannot use', () => {
    const env = { [ENV.tableName]: 't', [ENV.configCacheMs]: '0', [ENV.dynamodbEndpoint]: 'x' };

    expect(loadEnvironment(env)).toMatchObject({ configCacheMs: 0, dynamodbEndpoint: 'x' });
    expect(() => loadEnvironment({})).toThrow(/SLUICE_TABLE_NAME is not set/);
    expect(aggregatorEnvironment({ [AGGREGATOR_ENV.eventBus]: 'bus' })).toMatchObject({
      eventBus: 'bus',
    });
    expect(() => auditRetentionDays({ ...env, [ADMIN_ENV.auditRetentionDays]: '-1' })).toThrow(
      expect.objectContaining({
        code: 'environment_invalid',
        message: expect.stringContaining('SLUICE_AUDIT_RETENTION_DAYS'),
      }),
    );
  });
});
