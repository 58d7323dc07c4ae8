/**
 * Stored configuration documents as the admin API validates them (`parseConfig`): what the
 * schemas check beyond field types, each refusal naming its field.
 */
import { parseConfig, ValidationError } from '@sluice/core';
import { fallbackCycle } from '@sluice/core/internal';
import { describe, expect, it } from 'vitest';
import { tpm } from '../support/limits.js';

/** The field and message of the ValidationError `fn` throws. */
function refusal(fn: () => unknown): { field: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    return { field: error.field, message: error.message.slice(error.field.length + 2) };
  }
  throw new Error('expected a ValidationError');
}

describe('a plan’s fallbacks', () => {
  it('are stored as given when each is a resource tried once and allowed', () => {
    const plan = {
      allowed_resources: ['gpt-4o*'],
      fallbacks: { 'gpt-4o': ['gpt-4o-mini'], 'gpt-4o-mini': ['gpt-4o-nano'] },
    };

    expect(parseConfig('plan', plan)).toEqual(plan);
  });

  it('refuse a fallback to the resource itself, or one named twice', () => {
    const itself = { fallbacks: { 'gpt-4o': ['gpt-4o'] } };
    const twice = { fallbacks: { 'gpt-4o': ['gpt-4o-mini', 'gpt-4o-mini'] } };

    expect(refusal(() => parseConfig('plan', itself))).toEqual({
      field: 'fallbacks.gpt-4o[0]',
      message: 'gpt-4o is already tried before it',
    });
    expect(refusal(() => parseConfig('plan', twice))).toEqual({
      field: 'fallbacks.gpt-4o[1]',
      message: 'gpt-4o-mini is already tried before it',
    });
  });

  it('refuse a fallback the plan does not allow', () => {
    const plan = { allowed_resources: ['gpt-4o*'], fallbacks: { 'gpt-4o': ['claude-haiku'] } };

    expect(refusal(() => parseConfig('plan', plan))).toEqual({
      field: 'fallbacks.gpt-4o[0]',
      message: "claude-haiku is not among this plan's allowed_resources",
    });
  });

  it('refuse fallbacks that go round in a cycle, naming it', () => {
    const plan = { fallbacks: { a: ['b'], b: ['c'], c: ['a'] } };

    expect(refusal(() => parseConfig('plan', plan))).toEqual({
      field: 'fallbacks.a',
      message: 'fallbacks go round in a cycle: a → b → c → a',
    });
  });
});

describe('fallbackCycle', () => {
  it('finds no cycle where paths only meet again', () => {
    expect(fallbackCycle({ a: ['b', 'c'], b: ['c'], c: ['d'] })).toBeUndefined();
    expect(fallbackCycle({})).toBeUndefined();
  });

  it('finds a cycle reached from a resource outside it, as the resources on it', () => {
    expect(fallbackCycle({ a: ['b'], b: ['c'], c: ['b'] })).toEqual(['b', 'c', 'b']);
    expect(fallbackCycle({ a: ['a'] })).toEqual(['a', 'a']);
  });
});

describe('parseConfig', () => {
  it('names the body when the document itself is not one', () => {
    expect(refusal(() => parseConfig('plan', [])).field).toBe('body');
  });

  it('names a field under the one given', () => {
    const limits = [tpm(100), tpm(200)];

    expect(refusal(() => parseConfig('plan', { limits }, 'plans.free')).field).toBe(
      'plans.free.limits[1].name',
    );
  });

  it('refuses two limits of one name for one resource, and allows them for two', () => {
    const twice = [
      { ...tpm(100), resource: 'gpt-4o' },
      { ...tpm(200), resource: 'gpt-4o' },
    ];
    const apart = [
      { ...tpm(100), resource: 'gpt-4o' },
      { ...tpm(200), resource: 'claude-*' },
    ];

    expect(refusal(() => parseConfig('plan', { limits: twice }))).toEqual({
      field: 'limits[1].name',
      message: 'duplicate limit "tpm" for gpt-4o',
    });
    expect(parseConfig('plan', { limits: apart }).limits).toHaveLength(2);
  });

  it('refuses more than 16 names of limits', () => {
    const limits = Array.from({ length: 17 }, (_, i) => ({ ...tpm(100), name: `l${i}` }));

    expect(refusal(() => parseConfig('plan', { limits }))).toEqual({
      field: 'limits',
      message: 'at most 16 distinct limit names',
    });
  });

  it('refuses max_shards below shards', () => {
    const limits = [{ ...tpm(100), shards: 4, max_shards: 2 }];

    expect(refusal(() => parseConfig('plan', { limits }))).toEqual({
      field: 'limits[0].max_shards',
      message: 'must be at least shards (4)',
    });
  });
});

describe('budget alerts beside a limit that may shard their item', () => {
  const daily = { name: 'daily', metric: 'tokens', limit: 1_000, window: 'day', alerts: [0.5] };
  const sharded = { ...tpm(1_000_000), shards: 4 };
  const message =
    'budget alerts are not available on a quota whose item may be sharded: "tpm" asks for up to 4 shards';

  it('are refused where both land on the entity-wide item, naming the quota’s alerts', () => {
    // Each shard judged the alert on its share: four alerts at 250, three naming `*#1`… as the
    // resource.
    expect(refusal(() => parseConfig('plan', { limits: [sharded, daily] }))).toEqual({
      field: 'limits[1].alerts',
      message,
    });
    expect(
      refusal(() =>
        parseConfig('entity', { limits: [daily, { ...sharded, shards: 1, max_shards: 4 }] }),
      ).field,
    ).toBe('limits[0].alerts');
    expect(refusal(() => parseConfig('resource', { limits: [daily, sharded] }))).toEqual({
      field: 'limits[0].alerts',
      message,
    });
    expect(
      refusal(() => parseConfig('plan', { limits: [sharded, daily] }, 'plans.pro')).field,
    ).toBe('plans.pro.limits[1].alerts');
  });

  it('are refused where both land on one entity-resource item', () => {
    const limits = [
      { ...sharded, resource: 'gpt-4o*' },
      { ...daily, resource: 'gpt-4o-mini' },
    ];
    const exact = [
      { ...sharded, resource: 'gpt-4o' },
      { ...daily, resource: 'gpt*' },
    ];

    expect(refusal(() => parseConfig('plan', { limits })).field).toBe('limits[1].alerts');
    expect(refusal(() => parseConfig('plan', { limits: exact })).field).toBe('limits[1].alerts');
  });

  it('are refused where a resource’s own limit leaves the unpatterned one sharding the entity-wide item for the others', () => {
    // For gpt-4o, tpm is its own item's; for every other resource, the unpatterned tpm shards
    // the entity-wide item, which is one for all the entity's resources.
    const limits = [sharded, { ...tpm(500), resource: 'gpt-4o' }, daily];

    expect(refusal(() => parseConfig('plan', { limits })).field).toBe('limits[2].alerts');
  });

  it('are stored where no enforced limit may shard the item the quota lands on', () => {
    const apart = [
      [sharded, { ...daily, resource: 'gpt-4o' }], // the entity-wide item, and gpt-4o's own
      [{ ...sharded, resource: 'gpt-4o' }, daily],
      [
        { ...sharded, resource: 'claude-*' },
        { ...daily, resource: 'gpt-*' },
      ],
      [{ ...sharded, mode: 'shadow' }, daily], // a shadow limit's shards split nothing
      // For gpt-4o the more specific tpm wins, and it asks for no shards.
      [
        { ...sharded, resource: 'gpt-*' },
        { ...tpm(500), resource: 'gpt-4o' },
        { ...daily, resource: 'gpt-4o' },
      ],
      // Every resource has its own tpm: the unpatterned one lands nowhere.
      [sharded, { ...tpm(500), resource: '*' }, daily],
      [sharded, { ...daily, alerts: [] }],
    ];

    for (const limits of apart) expect(parseConfig('plan', { limits }).limits).toEqual(limits);
  });
});
