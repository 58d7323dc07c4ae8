/**
 * The keys leases are signed with, shared by every process through one table item:
 * `cur` names the key that signs, `k_<id>` holds each key, `e_<id>` says until when a key that
 * was rotated out still verifies. A key's id is derived from its secret, so two processes that
 * know a key agree on its id.
 *
 * - First start: the first process to find no key when it signs creates one (on condition that
 *   no key signs yet, so racing processes agree on one key; no PutItem and no step after deploy). Verifying never
 *   creates one: a table with no key signed no token.
 * - Rotation ({@link nextRotation}, an admin route): a new key signs from then on; the old one
 *   verifies until every lease it signed has expired, and is removed by a later rotation.
 * - Each process re-reads the item every `refreshMs` (in the background) and at once when a
 *   token names a key it does not know.
 * - What memory may answer alone: keys read less than two refreshes ago sign and verify. An older
 *   memory (a Lambda container thawed after an hour) is read again before it signs or verifies
 *   anything, so a key that rotations retired and removed never signs again.
 * - Recovery: if the item is deleted or loses keys, every process writes back the keys it knows
 *   may still verify (`if_not_exists`) on its next read, and all converge on the union. A key
 *   that rotations may have removed since this process last read it (its memory of the key is
 *   older than a retirement) is never written back. Every key written back gets a retirement
 *   time and only verifies: when no key signs, a new one is made (the first process to write
 *   `cur` wins), so a key an admin rotated out never signs again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SluiceError, StoreUnavailableError } from '../errors.js';
import { own } from '../names.js';
import { signingKeyAttributes as attrs, itemKeys } from '../store/schema.js';
import type { Assignment, Condition, ItemState, ItemUpdate, Store } from '../store/types.js';
import { orAfter } from './budget.js';
import type { SigningKey } from './lease.js';

interface HeldKey extends SigningKey {
  /** Epoch ms after which it no longer verifies; absent while it may still sign. */
  readonly retiresAtMs?: number;
}

/** A key as this process last read it from the table, and when. */
interface KnownKey extends HeldKey {
  readonly readAtMs: number;
}

interface Ring {
  readonly current: HeldKey;
  readonly keys: ReadonlyMap<string, HeldKey>;
  readonly readAtMs: number;
}

const keyIdOf = (secret: Buffer): string =>
  createHash('sha256').update(secret).digest('base64url').slice(0, 16);

/** A new random key. */
export function newSigningKey(): SigningKey {
  const secret = randomBytes(32);
  return { id: keyIdOf(secret), secret };
}

function keysOf(item: ItemState | undefined): Map<string, HeldKey> {
  const keys = new Map<string, HeldKey>();
  for (const [attr, value] of Object.entries(item ?? {})) {
    if (!attr.startsWith(attrs.secret('')) || typeof value !== 'string') continue;
    const secret = Buffer.from(value, 'base64');
    const id = keyIdOf(secret);
    if (attrs.secret(id) !== attr) continue; // not a key this code wrote
    const retires = own(item, attrs.retiresAt(id));
    keys.set(id, {
      id,
      secret,
      ...(typeof retires === 'bigint' ? { retiresAtMs: Number(retires) } : {}),
    });
  }
  return keys;
}

/** The key id the item names as current, whether or not the item still holds that key. */
function currentIdOf(item: ItemState | undefined): string | undefined {
  const id = item?.[attrs.current];
  return typeof id === 'string' ? id : undefined;
}

/**
 * The condition that no key signs in the item as read: no `cur`, or the same `cur` naming a key
 * the item does not hold (lost from a damaged item).
 */
function noneSigns(item: ItemState | undefined): Condition {
  const id = currentIdOf(item);
  return id === undefined
    ? { absent: attrs.current }
    : { and: [{ attr: attrs.current, op: '=', value: id }, { absent: attrs.secret(id) }] };
}

function ringOf(item: ItemState | undefined, readAtMs: number): Ring | undefined {
  const id = item?.[attrs.current];
  const keys = keysOf(item);
  const current = typeof id === 'string' ? keys.get(id) : undefined;
  return current ? { current, keys, readAtMs } : undefined;
}

/** Options of {@link SigningKeys}. */
export interface SigningKeysOptions {
  readonly store: Store;
  readonly clock?: () => number;
  /** How often the item is read again in the background. @default 60_000 */
  readonly refreshMs?: number;
  /** How long a key written back after a loss keeps verifying. @default 3_900_000 */
  readonly retainMs?: number;
  /** Told when the item had lost keys this process knows (they are written back). */
  readonly onRestore?: (keyIds: readonly string[]) => void;
  /**
   * How long callers wait on a read of the keys shared with others: one that has not answered
   * by then fails them (unavailable), and the next caller reads again. @default 3_000
   */
  readonly readTimeoutMs?: number;
}

/** The signing keys as one process holds them. */
export class SigningKeys {
  readonly #store: Store;
  readonly #clock: () => number;
  readonly #refreshMs: number;
  readonly #retainMs: number;
  readonly #onRestore: (keyIds: readonly string[]) => void;
  readonly #readTimeoutMs: number;
  /** Every key this process has read that may still verify: written back if the item loses it. */
  readonly #known = new Map<string, KnownKey>();
  #ring: Ring | undefined;
  #loading: Promise<Ring> | undefined;
  /** A first read started ahead of need (see {@link warm}), settled however it ends. */
  #warming: Promise<void> | undefined;
  /** The last read forced by an unknown id: when, and its outcome. */
  #forced: { readonly atMs: number; readonly reading?: Promise<Ring> } = {
    atMs: Number.NEGATIVE_INFINITY,
  };

  constructor(options: SigningKeysOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#refreshMs = options.refreshMs ?? 60_000;
    this.#retainMs = options.retainMs ?? 3_900_000;
    this.#onRestore = options.onRestore ?? (() => {});
    this.#readTimeoutMs = options.readTimeoutMs ?? 3_000;
  }

  /** The key that signs new leases. */
  async current(): Promise<SigningKey> {
    return (await this.#get()).current;
  }

  /**
   * The key with this id, if it may verify. A key not known here is read again first, unless
   * the keys held were read after the token says it was signed (`signedAtMs`): then it is not
   * found, without a read.
   */
  async find(id: string, signedAtMs = Number.POSITIVE_INFINITY): Promise<SigningKey | undefined> {
    // Until this process holds the keys, they are read without creating one: a table with no
    // key signed no token (and a settlement refused for it writes nothing).
    let ring = this.#ring ? await this.#get() : await this.#load(false);
    if (!ring) return undefined;
    if (!ring.keys.has(id)) ring = await this.#readFor(id, ring, signedAtMs);
    const key = ring.keys.get(id);
    if (!key || (key.retiresAtMs !== undefined && key.retiresAtMs <= this.#clock()))
      return undefined;
    return key;
  }

  /**
   * The keys read again for an id not known here (a key made by a rotation this process has not
   * read yet), at most once a second: a forged id must not cost a read each. Keys read after the
   * token was signed (with a second for clocks that differ) prove its key unknown: "not found".
   * Otherwise no answer is final: within the second, a read under way is waited for, and when
   * the keys at hand were still read too early (or the read failed) the call is unavailable and
   * is retried, never "not found".
   */
  async #readFor(id: string, ring: Ring, signedAtMs: number): Promise<Ring> {
    // A token saying it was signed more than a minute from now says so falsely (no clock is that
    // far off): keys read now prove its key unknown. (Within the minute, a second after it.)
    const future = signedAtMs > this.#clock() + 60_000;
    const proves = (r: Ring) => r.keys.has(id) || future || r.readAtMs >= signedAtMs + 1_000;
    if (proves(ring)) return ring;
    const nowMs = this.#clock();
    let read: Ring | undefined;
    if (nowMs - this.#forced.atMs >= 1_000) {
      const reading = this.reload();
      this.#forced = { atMs: nowMs, reading };
      read = await reading;
    } else if (this.#forced.reading) read = await this.#forced.reading; // rejects if it failed
    if (read && proves(read)) return read;
    throw new StoreUnavailableError('the lease signing keys are being read again; retry', {
      notApplied: true,
    });
  }

  /**
   * Starts reading the keys when this process holds none yet (a cold start), writing nothing
   * (no key created, no item repaired: a later read does that), so the read runs beside other
   * first reads (the configuration's) instead of after them. Nothing waits on it; signing later
   * waits for it rather than reading again.
   */
  warm(): void {
    if (this.#ring || this.#loading || this.#warming) return;
    this.#warming = this.#bounded(this.#load(false, false)).then(
      () => {
        this.#warming = undefined;
      },
      () => {
        this.#warming = undefined;
      },
    );
  }

  /** Resolves once a read under way (a background refresh) has finished, however it ended. */
  async idle(): Promise<void> {
    await this.#loading?.catch(() => undefined);
  }

  /** Reads the item now (after a rotation made by this process). */
  reload(): Promise<Ring> {
    if (this.#loading) return this.#loading;
    const loading = this.#bounded(this.#load()).finally(() => {
      if (this.#loading === loading) this.#loading = undefined;
    });
    this.#loading = loading;
    return loading;
  }

  /**
   * `read`, as the callers sharing it wait for it: a read that never answers (a connection that
   * hangs) fails them after `readTimeoutMs`, so it does not hold every later caller too.
   */
  #bounded<T>(read: Promise<T>): Promise<T> {
    return orAfter(read, this.#readTimeoutMs, () =>
      Promise.reject(new StoreUnavailableError('the lease signing keys were not read in time')),
    );
  }

  /**
   * The keys, read again in the background once `refreshMs` old, and before use once twice that
   * old: a rotation is seen within two refreshes, the time a key rotated out keeps signing.
   */
  async #get(): Promise<Ring> {
    if (!this.#ring && this.#warming) await this.#warming;
    const ring = this.#ring;
    if (!ring) return this.reload();
    const age = this.#clock() - ring.readAtMs;
    if (age >= 2 * this.#refreshMs) return this.reload();
    if (age >= this.#refreshMs) this.reload().catch(() => {}); // used next time
    return ring;
  }

  /**
   * Reads the keys; when the table holds none, creates one unless `create` is false. Unless
   * `repair` is false, an item holding keys while none signs, or lacking keys this process
   * knows, is repaired (with `repair` false, nothing is written, and nothing held).
   */
  #load(): Promise<Ring>;
  #load(create: false, repair?: boolean): Promise<Ring | undefined>;
  async #load(create = true, repair = true): Promise<Ring | undefined> {
    const key = itemKeys.leaseSigningKey();
    // What the table said no earlier than when the request was sent: a late answer is as old.
    let readAtMs = this.#clock();
    let item = await this.#store.get(key);
    // Two attempts: a failed condition means another process wrote `cur` since the read, and the
    // item it returns is read again as the answer.
    for (let attempt = 0; ; attempt += 1) {
      // A read overtaken by a newer one held here (this one hung) acts on nothing: the keys it
      // lacks may be a later rotation's, not lost ones.
      if (this.#ring && this.#ring.readAtMs > readAtMs) return this.#ring;
      const nowMs = this.#clock();
      let ring = ringOf(item, readAtMs);
      // Verifying creates no key where the table has none (no token was signed), but repairs an
      // item that holds keys while none signs.
      if (!ring && !create && keysOf(item).size === 0) return undefined;
      const lost = [...this.#known.values()].filter(
        (k) => !ring?.keys.has(k.id) && this.#mayStillVerify(k, nowMs),
      );
      if (ring && lost.length === 0) return this.#adopt(ring);
      if (!repair) return undefined;
      if (lost.length > 0) this.#onRestore(lost.map((k) => k.id));
      // No key signs (no `cur`, or one naming a key the item lost): this process proposes a new
      // one, on condition that the item still says so. Never a key it knew: its memory may
      // predate a rotation that retired that key (and the rotation would be undone). Every key
      // written back only verifies the leases it signed, and retires.
      const proposed = ring ? undefined : newSigningKey();
      const set: Assignment[] = [];
      if (proposed) {
        set.push({ attr: attrs.current, value: proposed.id });
        set.push({ attr: attrs.secret(proposed.id), value: proposed.secret.toString('base64') });
      }
      for (const k of lost) {
        set.push({ attr: attrs.secret(k.id), ifAbsent: k.secret.toString('base64') });
        const retiresAtMs = k.retiresAtMs ?? nowMs + this.#retainMs;
        set.push({ attr: attrs.retiresAt(k.id), ifAbsent: BigInt(retiresAtMs) });
      }
      readAtMs = this.#clock();
      const result = await this.#store.update({
        key,
        set,
        ...(proposed ? { condition: noneSigns(item) } : {}),
      });
      item = result.item;
      if (!result.ok && attempt === 0) continue;
      if (!result.ok)
        throw new StoreUnavailableError('the lease signing key item keeps changing; retry', {
          notApplied: true,
        });
      ring = ringOf(item, readAtMs);
      if (!ring) throw new SluiceError('internal', 'the lease signing key item is malformed');
      return this.#adopt(ring);
    }
  }

  /**
   * Holds the keys read: each remembered with when it was read; those removed are forgotten. A
   * read older than the keys held (sent before the read they came from, answered after it) is
   * not adopted: memory never goes back to before a rotation it has seen.
   */
  #adopt(ring: Ring): Ring {
    if (this.#ring && this.#ring.readAtMs > ring.readAtMs) return this.#ring;
    const nowMs = ring.readAtMs;
    for (const k of ring.keys.values()) this.#known.set(k.id, { ...k, readAtMs: nowMs });
    for (const id of this.#known.keys()) {
      if (!ring.keys.has(id)) this.#known.delete(id); // removed by a rotation: retired, not lost
    }
    this.#ring = ring;
    return ring;
  }

  /**
   * Whether a key this process read may still verify a lease: its retirement time has not passed,
   * or it had none when last read and a rotation since cannot yet have removed it (a rotation
   * retires a key `retainMs` after it, and only a later one removes it).
   */
  #mayStillVerify(key: KnownKey, nowMs: number): boolean {
    return key.retiresAtMs === undefined
      ? nowMs < key.readAtMs + this.#retainMs
      : key.retiresAtMs > nowMs;
  }
}

/** What a rotation does: the update to write (with its audit entry) and what it changes. */
export interface Rotation {
  readonly update: ItemUpdate;
  readonly current: string;
  readonly previous: string | null;
  readonly removed: readonly string[];
}

/**
 * Plans a rotation from the item as read: a new key becomes current, the current one retires
 * after `retainMs` (every lease it signed has expired by then), and keys already retired are
 * removed. Conditional on the current key read, so concurrent rotations do not lose one another.
 */
export function nextRotation(
  item: ItemState | undefined,
  nowMs: number,
  retainMs: number,
): Rotation {
  const ring = ringOf(item, nowMs);
  const next = newSigningKey();
  const removed = [...keysOf(item).values()]
    .filter((k) => k.retiresAtMs !== undefined && k.retiresAtMs <= nowMs)
    .map((k) => k.id);
  const set: Assignment[] = [
    { attr: attrs.current, value: next.id },
    { attr: attrs.secret(next.id), value: next.secret.toString('base64') },
  ];
  // Every key that may still sign (the current one, one written back) retires after retainMs.
  for (const k of keysOf(item).values()) {
    if (k.retiresAtMs === undefined)
      set.push({ attr: attrs.retiresAt(k.id), value: BigInt(nowMs + retainMs) });
  }
  return {
    update: {
      key: itemKeys.leaseSigningKey(),
      set,
      ...(removed.length
        ? { remove: removed.flatMap((id) => [attrs.secret(id), attrs.retiresAt(id)]) }
        : {}),
      condition:
        currentIdOf(item) === undefined
          ? { absent: attrs.current }
          : { attr: attrs.current, op: '=', value: currentIdOf(item) as string },
    },
    current: next.id,
    previous: ring?.current.id ?? null,
    removed,
  };
}
