import { ENGINE_DEFAULTS, SERVICE_DEFAULTS } from '@sluice/core';
import { ENV, loadEnvironment } from '@sluice/lambdas/environment';
import { describe, expect, it } from 'vitest';

describe('the functions’ environment', () => {
  it('takes every default from core', () => {
    expect(loadEnvironment({ [ENV.tableName]: 't' })).toEqual({
      tableName: 't',
      service: SERVICE_DEFAULTS.serviceName,
      configCacheMs: SERVICE_DEFAULTS.configCacheMs,
      auditRetentionDays: SERVICE_DEFAULTS.auditRetentionDays,
      usageRetentionDays: SERVICE_DEFAULTS.usageRetentionDays,
      denialFlushMs: SERVICE_DEFAULTS.denialFlushMs,
      shardGrowWritesPerSecond: ENGINE_DEFAULTS.shardGrowWritesPerSecond,
    });
  });

  it('reads what is set, and names the variable it cannot use', () => {
    const env = { [ENV.tableName]: 't', [ENV.configCacheMs]: '0', [ENV.dynamodbEndpoint]: 'x' };

    expect(loadEnvironment(env)).toMatchObject({ configCacheMs: 0, dynamodbEndpoint: 'x' });
    expect(() => loadEnvironment({})).toThrow(/SLUICE_TABLE_NAME is not set/);
    expect(() => loadEnvironment({ ...env, [ENV.auditRetentionDays]: '-1' })).toThrow(
      expect.objectContaining({
        code: 'environment_invalid',
        message: expect.stringContaining('SLUICE_AUDIT_RETENTION_DAYS'),
      }),
    );
  });
});
