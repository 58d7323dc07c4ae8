/**
 * Stored configuration under concurrent admins: whatever the interleaving, every stored
 * reference resolves and no parent chain has a cycle. And acquire never answers a 5xx (nor
 * admits without limits) for configuration that does not fit together.
 */
import { ConfigAdmin, type EntityConfig, itemKeys } from '@sluice/core';
import { CachedConfigSource, PolicyRefusal, resolvePolicy } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fileTable } from '../support/table.js';

const table = fileTable('races');

const tpm = { limits: [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 'minute' }] };

/** Every entity's plan and parent exist, and no chain of parents comes back on itself. */
async function assertConsistent(admin: ConfigAdmin, prefix: string) {
  const entities = (await admin.list('entity', { limit: 1_000 })).items.filter((e) =>
    e.name.startsWith(prefix),
  );
  const plans = new Set((await admin.list('plan', { limit: 1_000 })).items.map((p) => p.name));
  const parents = new Map(entities.map((e) => [e.name, (e.config as EntityConfig).parent]));
  for (const entity of entities) {
    const config = entity.config as EntityConfig;
    if (config.plan !== undefined) expect(plans, `${entity.name}'s plan`).toContain(config.plan);
    if (config.parent !== undefined)
      expect([...parents.keys()], `${entity.name}'s parent`).toContain(config.parent);
    const seen = new Set<string>();
    for (let at: string | undefined = entity.name; at !== undefined; at = parents.get(at)) {
      expect(seen.has(at), `cycle through ${entity.name}`).toBe(false);
      seen.add(at);
    }
  }
}

const settle = <T>(work: Promise<T>) =>
  work.then(
    () => true,
    () => false,
  );

describe('concurrent admin writes', () => {
  it('never store a cycle from two moves that each look fine alone', async () => {
    const admins = [0, 1].map(() => new ConfigAdmin({ store: table.store }));
    const [a1, a2] = admins as [ConfigAdmin, ConfigAdmin];
    for (let trial = 0; trial < 12; trial++) {
      const [a, b] = [`cyc${trial}-a`, `cyc${trial}-b`];
      await a1.put('entity', a, {}, 't');
      await a1.put('entity', b, {}, 't');

      const done = await Promise.all([
        settle(a1.put('entity', a, { parent: b }, 't')),
        settle(a2.put('entity', b, { parent: a }, 't')),
      ]);

      expect(done.filter(Boolean).length).toBeLessThanOrEqual(1);
      await assertConsistent(a1, `cyc${trial}-`);
    }
  });

  it('never leave an entity naming a plan deleted at the same moment', async () => {
    const [a1, a2] = [0, 1].map(() => new ConfigAdmin({ store: table.store })) as [
      ConfigAdmin,
      ConfigAdmin,
    ];
    for (let trial = 0; trial < 12; trial++) {
      const plan = `gone${trial}`;
      await a1.put('plan', plan, tpm, 't');

      await Promise.all([
        settle(a1.put('entity', `ref${trial}-k`, { plan }, 't')),
        settle(a2.delete('plan', plan, 't')),
      ]);

      await assertConsistent(a1, `ref${trial}-`);
    }
  });

  it('never leave a child under a parent deleted at the same moment', async () => {
    const [a1, a2] = [0, 1].map(() => new ConfigAdmin({ store: table.store })) as [
      ConfigAdmin,
      ConfigAdmin,
    ];
    for (let trial = 0; trial < 12; trial++) {
      const parent = `orph${trial}-p`;
      await a1.put('entity', parent, {}, 't');

      await Promise.all([
        settle(a1.put('entity', `orph${trial}-c`, { parent }, 't')),
        settle(a2.delete('entity', parent, 't')),
      ]);

      await assertConsistent(a1, `orph${trial}-`);
    }
  });

  it('keep every reference true under generated interleavings of puts and deletes', async () => {
    const names = ['e0', 'e1', 'e2'];
    const plans = ['p0', 'p1'];
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('entity' as const),
        name: fc.constantFrom(...names),
        parent: fc.option(fc.constantFrom(...names)),
        plan: fc.option(fc.constantFrom(...plans)),
      }),
      fc.record({ kind: fc.constant('plan' as const), name: fc.constantFrom(...plans) }),
      fc.record({
        kind: fc.constant('delete' as const),
        what: fc.constantFrom('entity' as const, 'plan' as const),
        name: fc.constantFrom(...names, ...plans),
      }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 4, maxLength: 8 }), { minLength: 3, maxLength: 6 }),
        async (batches) => {
          const prefix = `g${++run}-`;
          const admins = [0, 1, 2].map(() => new ConfigAdmin({ store: table.store }));
          for (const batch of batches) {
            await Promise.all(
              batch.map((o, i) => {
                const admin = admins[i % 3] as ConfigAdmin;
                if (o.kind === 'plan') return settle(admin.put('plan', prefix + o.name, tpm, 't'));
                if (o.kind === 'delete') return settle(admin.delete(o.what, prefix + o.name, 't'));
                return settle(
                  admin.put(
                    'entity',
                    prefix + o.name,
                    {
                      ...(o.parent ? { parent: prefix + o.parent } : {}),
                      ...(o.plan ? { plan: prefix + o.plan } : {}),
                    },
                    't',
                  ),
                );
              }),
            );
            await assertConsistent(admins[0] as ConfigAdmin, prefix);
          }
        },
      ),
      { seed: 1123, numRuns: 16, endOnFailure: true },
    );
  });
});

describe('configuration that does not fit together', () => {
  async function writeRaw(kind: string, name: string, doc: unknown) {
    await table.store.update({
      key: itemKeys.config(kind, name),
      set: [
        { attr: 'doc', value: JSON.stringify(doc) },
        { attr: 'at', value: new Date().toISOString() },
        { attr: 'by', value: 'raw' },
        { attr: 'v', value: 1n },
      ],
    });
  }

  it('reads a stale cached parent through and resolves what is stored now', async () => {
    const admin = new ConfigAdmin({ store: table.store });
    const policies = new CachedConfigSource({ store: table.store, ttlMs: 600_000 });
    await admin.put('entity', 'st-p1', tpm, 't');
    await admin.put('entity', 'st-p2', tpm, 't');
    await admin.put('entity', 'st-k', { parent: 'st-p1' }, 't');
    await policies.entity('st-k'); // this process has read k → p1, and not p1 yet

    await admin.put('entity', 'st-k', { parent: 'st-p2' }, 't');
    await admin.delete('entity', 'st-p1', 't');
    const policy = await resolvePolicy(policies, { entity: 'st-k', resource: 'm', usage: {} });

    expect(policy.checks.map((c) => c.scope)).toContain('parent:st-p2');
  });

  it('refuses a missing plan with configuration_invalid instead of admitting without it', async () => {
    await writeRaw('entity', 'np-k', { plan: 'never-stored' });
    const policies = new CachedConfigSource({ store: table.store });

    const resolving = resolvePolicy(policies, { entity: 'np-k', resource: 'm', usage: {} });

    await expect(resolving).rejects.toBeInstanceOf(PolicyRefusal);
    await expect(resolving).rejects.toMatchObject({ code: 'configuration_invalid' });
  });

  it('refuses a cycle or a missing parent with configuration_invalid', async () => {
    await writeRaw('entity', 'cy-a', { parent: 'cy-b' });
    await writeRaw('entity', 'cy-b', { parent: 'cy-a' });
    await writeRaw('entity', 'mp-k', { parent: 'mp-nobody' });
    const policies = new CachedConfigSource({ store: table.store });

    for (const entity of ['cy-a', 'mp-k']) {
      await expect(
        resolvePolicy(policies, { entity, resource: 'm', usage: {} }),
      ).rejects.toMatchObject({ code: 'configuration_invalid' });
    }
  });
});
