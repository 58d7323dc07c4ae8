/**
 * Lease signing keys: rotation, and an accidentally deleted key item, across processes.
 */
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import {
  ConfigAdmin,
  itemKeys,
  LeaseNotFoundError,
  Limiter,
  parseLimits,
  type ScopeCheck,
  type Store,
  StoreUnavailableError,
} from '@sluice/core';
import { signingKeyAttributes, TABLE_SCHEMA } from '@sluice/core/internal';
import { beforeEach, describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { HookedStore } from '../support/hooked-store.js';
import { freshTable, manualClock, type TestTable } from '../support/table.js';

let table: TestTable;
let n = 0;
beforeEach(async () => {
  table = await freshTable('keys'); // the key item is per table: one table per test
});

const check = (): ScopeCheck => ({
  scope: 'entity',
  key: itemKeys.entityBucket(`k-${++n}`, 'gpt-4o'),
  limits: parseLimits([{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }]),
});

/** The key id a token names (its body is base64url JSON; tokens are opaque to clients). */
const keyIdOf = (token: string): string =>
  (JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { k: string }).k;

async function leaseFrom(limiter: Limiter): Promise<string> {
  const result = await limiter.acquire({ checks: [check()], usage: { tokens: 10 } });
  if (!result.allowed) throw new Error('expected admission');
  return result.leaseId;
}

describe('rotating the signing key', () => {
  it('signs new leases with the new key while leases signed before still settle anywhere', async () => {
    const clock = manualClock();
    const before = table.limiter({ clock: clock.now });
    const old = await leaseFrom(before);
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });

    const rotation = await admin.rotateSigningKey('test', 3_720_000);
    const after = table.limiter({ clock: clock.now }); // a process started after the rotation
    const fresh = await leaseFrom(after);

    expect(rotation.previous).toBe(keyIdOf(old));
    expect(keyIdOf(fresh)).toBe(rotation.current);
    expect((await after.release(old, { tokens: 5 })).settled).toBe(true);
    expect((await before.release(fresh, { tokens: 5 })).settled).toBe(true);
  });

  it('reaches a running process within its refresh, and retires the old key after the last lease', async () => {
    const clock = manualClock();
    const running = table.limiter({ clock: clock.now, signingKeyRefreshMs: 60_000 });
    const first = await leaseFrom(running);
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    const { current } = await admin.rotateSigningKey('test', 3_720_000);

    clock.advance(61_000);
    await leaseFrom(running); // notices its keys are a minute old: reads them in the background
    await running.engine.keys.idle();
    const next = await leaseFrom(running);
    clock.advance(3_720_000);
    const again = await admin.rotateSigningKey('test', 3_720_000);

    expect(keyIdOf(next)).toBe(current);
    expect(again.removed).toContain(keyIdOf(first));
  });
});

describe('a process that slept through rotations', () => {
  it('never signs with a key a rotation removed, and never writes it back', async () => {
    const clock = manualClock();
    // A Lambda container frozen between invocations: its keys are from before both rotations.
    const sleeper = table.limiter({ clock: clock.now, signingKeyRefreshMs: 60_000 });
    const first = await leaseFrom(sleeper);
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    await admin.rotateSigningKey('test', 3_720_000);
    clock.advance(3_720_001);
    const second = await admin.rotateSigningKey('test', 3_720_000);
    expect(second.removed).toContain(keyIdOf(first));

    const woken = await leaseFrom(sleeper);
    await sleeper.engine.keys.idle();
    const item = await table.store.get(itemKeys.leaseSigningKey());

    expect(keyIdOf(woken)).toBe(second.current);
    expect(Object.keys(item ?? {}).filter((attr) => attr.includes(keyIdOf(first)))).toEqual([]);
  });

  it('writes back a key lost from the table with a retirement time when another key signs', async () => {
    const clock = manualClock();
    const old = table.limiter({ clock: clock.now, signingKeyRefreshMs: 60_000 });
    const before = await leaseFrom(old);
    await table.client.send(
      new DeleteItemCommand({
        TableName: table.tableName,
        Key: {
          [TABLE_SCHEMA.partitionKey]: { S: itemKeys.leaseSigningKey().pk },
          [TABLE_SCHEMA.sortKey]: { S: itemKeys.leaseSigningKey().sk },
        },
      }),
    );
    await leaseFrom(table.limiter({ clock: clock.now })); // a new process makes a new key

    clock.advance(61_000);
    await leaseFrom(old);
    await old.engine.keys.idle();
    const item = await table.store.get(itemKeys.leaseSigningKey());

    expect(typeof item?.[signingKeyAttributes.retiresAt(keyIdOf(before))]).toBe('bigint');
  });
});

describe('a lease signed with a key a process has not read yet', () => {
  it('settles in that process for every concurrent request, not only the first', async () => {
    const clock = manualClock();
    const other = table.limiter({ clock: clock.now });
    await leaseFrom(other); // it holds the keys from before the rotation
    const rotator = table.limiter({ clock: clock.now });
    await new ConfigAdmin({ store: table.store, clock: clock.now }).rotateSigningKey(
      'test',
      3_720_000,
    );
    await rotator.reloadSigningKeys();
    const leases = [await leaseFrom(rotator), await leaseFrom(rotator)];

    const settled = await Promise.all(leases.map((lease) => other.release(lease, { tokens: 1 })));

    expect(settled.map((r) => r.settled)).toEqual([true, true]);
  });

  it('is unavailable, never not found, while the keys cannot be read', async () => {
    const clock = manualClock();
    let down = false;
    const store = new HookedStore(table.store);
    const reads = { get: store.get.bind(store) };
    store.get = async (key) => {
      if (down) throw new StoreUnavailableError('DynamoDB unavailable: ECONNREFUSED');
      return reads.get(key);
    };
    const other = new Limiter({ store, clock: clock.now });
    await leaseFrom(other);
    const rotator = table.limiter({ clock: clock.now });
    await new ConfigAdmin({ store: table.store, clock: clock.now }).rotateSigningKey(
      'test',
      3_720_000,
    );
    await rotator.reloadSigningKeys();
    const lease = await leaseFrom(rotator);
    down = true;

    for (let i = 0; i < 3; i++)
      await expect(other.release(lease, { tokens: 1 })).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
    down = false;
    clock.advance(1_000);

    expect((await other.release(lease, { tokens: 1 })).settled).toBe(true);
  });
});

describe('a token naming a key not read yet', () => {
  it('is unavailable, never not found, until the keys have been read after it was signed', async () => {
    const clock = manualClock();
    const reader = table.limiter({ clock: clock.now });
    await leaseFrom(reader); // it holds the keys from now
    const rotator = table.limiter({ clock: clock.now });
    await new ConfigAdmin({ store: table.store, clock: clock.now }).rotateSigningKey(
      'test',
      3_720_000,
    );
    await rotator.reloadSigningKeys();
    const early = await leaseFrom(rotator); // signed by the new key, as the reader's read began
    await reader.release(early, { tokens: 1 }); // its forced read finds the new key

    await new ConfigAdmin({ store: table.store, clock: clock.now }).rotateSigningKey(
      'test',
      3_720_000,
    );
    await rotator.reloadSigningKeys();
    const late = await leaseFrom(rotator); // within the second of the reader's forced read

    await expect(reader.release(late, { tokens: 1 })).rejects.toBeInstanceOf(StoreUnavailableError);
    clock.advance(1_000);
    expect((await reader.release(late, { tokens: 1 })).settled).toBe(true);
  });
});

describe('a token saying it was signed more than a minute from now', () => {
  it('is not found when the keys read now do not hold its key (never unavailable for ever)', async () => {
    const clock = manualClock();
    const limiter = table.limiter({ clock: clock.now });
    const lease = await leaseFrom(limiter);
    const [body, signature] = lease.split('.') as [string, string];
    const wire = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    const future = { ...wire, k: 'nobody', a: clock.now() + 86_400_000 };
    const forged = `${Buffer.from(JSON.stringify(future)).toString('base64url')}.${signature}`;

    await expect(limiter.adjust(forged, { tokens: 1 })).rejects.toBeInstanceOf(LeaseNotFoundError);
  });
});

describe('a deleted signing key item', () => {
  it('is rebuilt from the keys running processes know: leases of both keys settle everywhere', async () => {
    const clock = manualClock();
    const restored: string[][] = [];
    const old = table.limiter({
      clock: clock.now,
      signingKeyRefreshMs: 60_000,
      onSigningKeysRestored: (ids) => restored.push([...ids]),
    });
    const before = await leaseFrom(old);
    await table.client.send(
      new DeleteItemCommand({
        TableName: table.tableName,
        Key: {
          [TABLE_SCHEMA.partitionKey]: { S: itemKeys.leaseSigningKey().pk },
          [TABLE_SCHEMA.sortKey]: { S: itemKeys.leaseSigningKey().sk },
        },
      }),
    );
    const newcomer = table.limiter({ clock: clock.now }); // creates a new key
    const after = await leaseFrom(newcomer);

    clock.advance(61_000);
    await leaseFrom(old); // its refresh finds its key missing and writes it back
    await old.engine.keys.idle();
    clock.advance(1_500);

    expect(keyIdOf(after)).not.toBe(keyIdOf(before));
    expect(restored).toEqual([[keyIdOf(before)]]);
    expect((await newcomer.release(before, { tokens: 1 })).settled).toBe(true);
    expect((await old.release(after, { tokens: 1 })).settled).toBe(true);
  });

  it('never makes a key an admin rotated out sign again, whatever a process remembers', async () => {
    const clock = manualClock();
    const sleeper = table.limiter({ clock: clock.now, signingKeyRefreshMs: 60_000 });
    const rotatedOut = keyIdOf(await leaseFrom(sleeper)); // the sleeper remembers this key
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    const rotation = await admin.rotateSigningKey('test', 3_720_000);
    await table.client.send(
      new DeleteItemCommand({
        TableName: table.tableName,
        Key: {
          [TABLE_SCHEMA.partitionKey]: { S: itemKeys.leaseSigningKey().pk },
          [TABLE_SCHEMA.sortKey]: { S: itemKeys.leaseSigningKey().sk },
        },
      }),
    );

    clock.advance(121_000); // the sleeper's keys are too old to sign: it reads, finds none
    const signsNow = keyIdOf(await leaseFrom(sleeper));
    const item = await table.store.get(itemKeys.leaseSigningKey());

    expect(rotation.previous).toBe(rotatedOut);
    expect(signsNow).not.toBe(rotatedOut);
    expect(item?.[signingKeyAttributes.current]).toBe(signsNow);
    expect(typeof item?.[signingKeyAttributes.retiresAt(rotatedOut)]).toBe('bigint');
  });

  it('is repaired when it loses the current key: a new key signs, the others verify, rotation works', async () => {
    const clock = manualClock();
    const first = table.limiter({ clock: clock.now });
    const old = await leaseFrom(first); // signed by the first key
    const admin = new ConfigAdmin({ store: table.store, clock: clock.now });
    const rotation = await admin.rotateSigningKey('test', 3_720_000);
    const item = itemKeys.leaseSigningKey();
    // The item loses the secret of the key `cur` names; the first key is still there.
    await table.store.update({
      key: item,
      set: [],
      remove: [signingKeyAttributes.secret(rotation.current)],
    });

    const newcomer = table.limiter({ clock: clock.now });
    const settledOld = await newcomer.release(old, { tokens: 1 }); // verifies, and repairs
    const signed = await leaseFrom(newcomer);
    const rotatedAgain = await admin.rotateSigningKey('test', 3_720_000);

    expect(settledOld.settled).toBe(true);
    expect(keyIdOf(signed)).not.toBe(rotation.current);
    expect(keyIdOf(signed)).not.toBe(keyIdOf(old));
    expect(rotatedAgain.previous).toBe(keyIdOf(signed));
    expect((await table.limiter({ clock: clock.now }).release(signed, { tokens: 1 })).settled).toBe(
      true,
    );
  });

  it('refuses a token whose key no process knows as not found, without a read per attempt', async () => {
    const store = new CountingStore(table.store);
    const clock = manualClock();
    const limiter = new Limiter({ store, clock: clock.now });
    const lease = await leaseFrom(limiter);
    clock.advance(2_000); // keys read from now on were read after the token says it was signed
    const [body, signature] = lease.split('.') as [string, string];
    const wire = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${Buffer.from(JSON.stringify({ ...wire, k: 'nobody' })).toString('base64url')}.${signature}`;
    const readsBefore = store.counts.get;

    for (let i = 0; i < 5; i++) {
      await expect(limiter.adjust(forged, { tokens: 1 })).rejects.toBeInstanceOf(
        LeaseNotFoundError,
      );
    }

    expect(store.counts.get - readsBefore).toBe(1);
  });
});

describe('a read of the keys that hangs', () => {
  it('holds its callers a few seconds at most, and its late answer never takes memory back past a rotation', async () => {
    const first = table.limiter();
    const k1 = keyIdOf(await leaseFrom(first));
    // The next read of the key item is answered late: it reads the table at once (K1 current)
    // and its answer arrives only when released.
    let release = () => {};
    let gate: Promise<void> | undefined = new Promise<void>((resolve) => {
      release = resolve;
    });
    const gated: Store = {
      update: (u) => table.store.update(u),
      transact: (t) => table.store.transact(t),
      get: async (key) => {
        const item = await table.store.get(key);
        const held = gate;
        gate = undefined;
        if (held) await held;
        return item;
      },
    };
    const limiter = new Limiter({ store: gated });
    const t0 = Date.now();
    await expect(limiter.engine.keys.reload()).rejects.toThrow(StoreUnavailableError);
    expect(Date.now() - t0).toBeLessThan(4_000);

    const rotation = await new ConfigAdmin({ store: table.store }).rotateSigningKey(
      'test',
      3_720_000,
    );
    expect((await limiter.engine.keys.reload()).current.id).toBe(rotation.current); // read anew
    release(); // the late answer (K1 current, no K2) arrives now
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(rotation.previous).toBe(k1);
    expect(keyIdOf(await leaseFrom(limiter))).toBe(rotation.current);
    // Nothing was written back as "lost": the new current key has no retirement time.
    const item = await table.store.get(itemKeys.leaseSigningKey());
    expect(item?.[signingKeyAttributes.retiresAt(rotation.current)]).toBeUndefined();
  }, 15_000);
});

describe('the first read of a cold process (warm)', () => {
  it('writes nothing, not even to repair an item that holds keys while none signs', async () => {
    const first = table.limiter();
    await leaseFrom(first);
    const key = itemKeys.leaseSigningKey();
    const before = (await table.store.get(key)) ?? {};
    const current = String(before[signingKeyAttributes.current]);
    // Damaged by hand: the keys are there, `cur` is not.
    await table.store.update({ key, set: [], remove: [signingKeyAttributes.current] });
    const damaged = await table.store.get(key);
    expect(damaged?.[signingKeyAttributes.current]).toBeUndefined();

    const cold = table.limiter();
    cold.engine.keys.warm();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await table.store.get(key)).toEqual(damaged); // nothing written

    // Signing repairs it (a new key signs; the old one still verifies).
    expect(keyIdOf(await leaseFrom(cold))).not.toBe(current);
    expect((await table.store.get(key))?.[signingKeyAttributes.current]).toBeDefined();
  });
});
