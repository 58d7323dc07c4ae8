import {
  type EntityConfig,
  type PlanConfig,
  type ResourceConfig,
  type SettingsConfig,
  ValidationError,
} from '@sluice/core';
import { type ConfigSource, PolicyRefusal, resolvePolicy } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';

/** Stored configuration as plain data: the resolver's input. */
function source(data: {
  plans?: Record<string, PlanConfig>;
  entities?: Record<string, EntityConfig>;
  resources?: Record<string, ResourceConfig>;
  settings?: SettingsConfig;
}): ConfigSource {
  return {
    plan: async (name) => data.plans?.[name],
    entity: async (id) => data.entities?.[id],
    resource: async (name) => data.resources?.[name],
    settings: async () => data.settings ?? {},
  };
}

const rpm = (limit: number, resource?: string) => ({
  name: 'rpm',
  metric: 'requests',
  limit,
  per: 'minute' as const,
  ...(resource ? { resource } : {}),
});

const summary = (policy: Awaited<ReturnType<typeof resolvePolicy>>) =>
  policy.checks.map((c) => ({
    scope: c.scope,
    sk: c.key.sk,
    pk: c.key.pk,
    limits: c.limits.map((l) => `${l.name}=${l.limit}`),
    ...(c.priority ? { priority: c.priority } : {}),
  }));

describe('resolvePolicy', () => {
  it('picks the most specific pattern per name; shared limits get the entity-wide item', async () => {
    const config = source({
      plans: {
        p: {
          limits: [rpm(10), rpm(20, 'gpt-*'), rpm(30, 'gpt-4o*'), rpm(40, 'gpt-4o')],
        },
      },
      entities: { k: { plan: 'p' } },
    });
    const at = async (resource: string) =>
      summary(await resolvePolicy(config, { entity: 'k', resource, usage: {} }));

    expect(await at('gpt-4o')).toEqual([
      { scope: 'entity', pk: 'entity#k', sk: 'gpt-4o', limits: ['rpm=40'] },
    ]);
    expect(await at('gpt-4o-mini')).toEqual([
      { scope: 'entity', pk: 'entity#k', sk: 'gpt-4o-mini', limits: ['rpm=30'] },
    ]);
    expect(await at('claude')).toEqual([
      { scope: 'entity', pk: 'entity#k', sk: '*', limits: ['rpm=10'] },
    ]);
  });

  it('overrides plan limits by name, walks ancestors, adds the resource and inline limits', async () => {
    const config = source({
      plans: { p: { limits: [rpm(10)], priority: 40 }, orgplan: { limits: [rpm(1000)] } },
      entities: {
        k: { plan: 'p', parent: 'proj', limits: [rpm(15)] },
        proj: { parent: 'org', limits: [{ ...rpm(100), name: 'proj_rpm' }] },
        org: { plan: 'orgplan' },
      },
      resources: { m: { limits: [{ ...rpm(5000), name: 'provider_rpm' }] } },
    });
    const policy = await resolvePolicy(config, {
      entity: 'k',
      resource: 'm',
      usage: {},
      inline: [{ name: 'mine', metric: 'tokens', limit: 5, per: 'second' }],
    });

    expect(summary(policy)).toEqual([
      { scope: 'entity', pk: 'entity#k', sk: 'm', limits: ['mine=5'] },
      { scope: 'entity', pk: 'entity#k', sk: '*', limits: ['rpm=15'] },
      { scope: 'parent:proj', pk: 'entity#proj', sk: '*', limits: ['proj_rpm=100'], priority: 40 },
      { scope: 'parent:org', pk: 'entity#org', sk: '*', limits: ['rpm=1000'], priority: 40 },
      { scope: 'resource', pk: 'resource#m', sk: '*', limits: ['provider_rpm=5000'], priority: 40 },
    ]);
  });

  it('refuses by configuration with the right code', async () => {
    const config = source({
      plans: {
        default: { allowed_resources: ['small-*'], max_input_tokens: 100 },
        p: {},
      },
      entities: { off: { plan: 'p', parent: 'dead' }, dead: { disabled: true } },
      resources: { pricey: {} },
    });
    const refusal = async (entity: string, resource: string, usage = {}) => {
      try {
        await resolvePolicy(config, { entity, resource, usage });
      } catch (error) {
        if (error instanceof PolicyRefusal) return error.code;
        throw error;
      }
      return 'resolved';
    };

    expect(await refusal('anyone', 'big-model')).toBe('resource_not_allowed');
    expect(await refusal('anyone', 'small-1', { input_tokens: 101 })).toBe('context_too_large');
    expect(await refusal('off', 'm')).toBe('entity_disabled');
  });

  it('refuses a cost limit without a price, unless the caller states the cost', async () => {
    const config = source({ entities: { k: {} } });
    const usd = [{ name: 'usd', metric: 'cost_micro_usd', limit: 5, window: 'day' as const }];
    await expect(
      resolvePolicy(config, { entity: 'k', resource: 'm', usage: { tokens: 1 }, inline: usd }),
    ).rejects.toMatchObject({ code: 'price_unknown' });
    await expect(
      resolvePolicy(config, {
        entity: 'k',
        resource: 'm',
        usage: { cost_micro_usd: 1 },
        inline: usd,
      }),
    ).resolves.toBeDefined();
  });

  it('lets inline limits only add: a different definition of a stored name is a 400', async () => {
    const config = source({ entities: { k: { limits: [rpm(10)] } } });
    const ask = (inline: ReturnType<typeof rpm>[]) =>
      resolvePolicy(config, { entity: 'k', resource: 'm', usage: {}, inline });

    await expect(ask([rpm(10)])).resolves.toBeDefined();
    await expect(ask([rpm(99)])).rejects.toBeInstanceOf(ValidationError);
    await expect(ask([rpm(99)])).rejects.toMatchObject({ field: 'limits[0].name' });
  });
});
