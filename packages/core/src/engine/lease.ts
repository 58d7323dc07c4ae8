/**
 * Leases are signed, opaque tokens that carry what the acquire took, so acquire writes nothing
 * but the buckets themselves. Settlement (adjust/release) records the applied totals in a lease
 * item, in the same transaction as the bucket changes, which makes it exactly-once.
 *
 * Token: base64url(JSON claims) "." base64url(HMAC-SHA256(claims)). The key is shared by every
 * process that serves the API (it lives in the table), so a lease settles anywhere.
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { type Price, priceFromText, priceToText } from '../catalog/price.js';
import { LeaseNotFoundError } from '../errors.js';
import type { ItemKey } from '../store/types.js';
import type { CalendarUnit } from './calendar.js';
import type { BucketLimit, QuotaLimit, Usage } from './limits.js';
import {
  type ContextWire,
  contextFromWire,
  contextToWire,
  type UsageContext,
} from './usage-context.js';

/**
 * Longest token accepted; anything longer is not one of ours. A lease over a deep hierarchy
 * (8 levels, each with shared and per-model items full of limits) stays well below it.
 */
export const MAX_LEASE_ID_LENGTH = 32_768;

/** A limit as the lease took from it; a quota remembers the window it was charged in. */
export type LeasedLimit = BucketLimit | (QuotaLimit & { readonly windowStartMs: number });

/** One scope item of a lease: its key, its scope label, and the limits taken from it. */
export interface LeasedItem {
  readonly key: ItemKey;
  readonly scope: string;
  readonly limits: readonly LeasedLimit[];
  /** The item's generation when the lease was charged: refunds go into that generation only. */
  readonly generation: number;
  /**
   * How many shards split its scope where the item stood when the lease was charged (absent: 1,
   * whole): what it took drained at that share's rate, whatever splits came since.
   */
  readonly shares?: number;
}

/** What a lease token says. */
export interface LeaseClaims {
  readonly id: string;
  /** When it was acquired, epoch ms: refunds return only what has not refilled since. */
  readonly acquiredAtMs: number;
  /** Expiry, epoch ms. */
  readonly expiresAtMs: number;
  /** The usage charged at acquire time. */
  readonly usage: Usage;
  readonly items: readonly LeasedItem[];
  /** The resource's price at acquire time: settlement derives cost from it. */
  readonly price?: Price;
  /** Whom its usage counts for in usage history. */
  readonly context?: UsageContext;
}

type WireBucket = [
  name: string,
  metric: string,
  kind: 'b',
  limit: number,
  periodSeconds: number,
  burst: number,
  shadow?: 1,
];
type WireQuota = [
  name: string,
  metric: string,
  kind: 'q',
  limit: number,
  window: CalendarUnit,
  timezone: string,
  startMs: number,
  shadow?: 1,
];
interface Wire {
  v: 2;
  /** Id of the key that signed it. */
  k: string;
  i: string;
  a: number;
  x: number;
  u: Usage;
  s: { p: string; k: string; c: string; g: number; n?: number; l: (WireBucket | WireQuota)[] }[];
  p?: string[];
  c?: ContextWire;
}

/** A signing key: its id (named in every token it signs) and its secret. */
export interface SigningKey {
  readonly id: string;
  readonly secret: Buffer;
}

/** Random bytes drawn 4 KB at a time (as `crypto.randomUUID` caches its entropy): a call per id cost more than the rest of an acquire's own work. */
const pool = Buffer.alloc(4_096);
let drawnUpTo = pool.length;

/** A fresh random lease id (128 bits, from the system CSPRNG). */
export function newLeaseId(): string {
  if (drawnUpTo + 16 > pool.length) {
    randomFillSync(pool);
    drawnUpTo = 0;
  }
  drawnUpTo += 16;
  return pool.toString('base64url', drawnUpTo - 16, drawnUpTo);
}

function mac(key: Buffer, body: string): Buffer {
  return createHmac('sha256', key).update(body).digest();
}

/** Signs claims into an opaque token. */
export function signLease(claims: LeaseClaims, key: SigningKey): string {
  const wire: Wire = {
    v: 2,
    k: key.id,
    i: claims.id,
    a: claims.acquiredAtMs,
    x: claims.expiresAtMs,
    u: claims.usage,
    s: claims.items.map((item) => ({
      p: item.key.pk,
      k: item.key.sk,
      c: item.scope,
      g: item.generation,
      ...(item.shares !== undefined && item.shares > 1 ? { n: item.shares } : {}),
      l: item.limits.map((l): WireBucket | WireQuota =>
        l.kind === 'bucket'
          ? [l.name, l.metric, 'b', l.limit, l.periodSeconds, l.burst, ...shadowMark(l)]
          : [
              l.name,
              l.metric,
              'q',
              l.limit,
              l.window,
              l.timezone,
              l.windowStartMs,
              ...shadowMark(l),
            ],
      ),
    })),
    ...(claims.price ? { p: priceToText(claims.price) } : {}),
    ...(claims.context ? { c: contextToWire(claims.context) } : {}),
  };
  const body = Buffer.from(JSON.stringify(wire)).toString('base64url');
  return `${body}.${mac(key.secret, body).toString('base64url')}`;
}

function decode(token: string): { wire: Wire; body: string; signature: string } | undefined {
  if (token.length > MAX_LEASE_ID_LENGTH) return undefined;
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  const body = token.slice(0, dot);
  try {
    const wire = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Wire;
    if (!wire || typeof wire !== 'object' || wire.v !== 2) return undefined;
    return { wire, body, signature: token.slice(dot + 1) };
  } catch {
    return undefined;
  }
}

/**
 * The usage context (resource, entity and ancestors) a token carries, read without verifying it:
 * for a token an operation has just verified, to describe what it did.
 */
export function leaseContextOf(token: string): UsageContext | undefined {
  const wire = decode(token)?.wire.c;
  try {
    return wire ? contextFromWire(wire) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies and decodes a token with the key it names, looked up by `keyFor`; an altered,
 * foreign or expired one, or one whose key is unknown, is "not found".
 */
export async function verifyLease(
  token: string,
  keyFor: (keyId: string, signedAtMs: number) => Promise<SigningKey | undefined>,
  nowMs: number,
): Promise<LeaseClaims> {
  const decoded = decode(token);
  if (!decoded || typeof decoded.wire.k !== 'string') throw new LeaseNotFoundError();
  // When it says it was signed (not yet verified): it only decides whether to read the keys again.
  const signedAtMs = typeof decoded.wire.a === 'number' ? decoded.wire.a : Number.POSITIVE_INFINITY;
  const key = await keyFor(decoded.wire.k, signedAtMs);
  if (!key || key.id !== decoded.wire.k) throw new LeaseNotFoundError();
  const { wire, body, signature } = decoded;
  // Compared as text, in the one form it was signed in: a decoder forgives padding, whitespace,
  // the standard alphabet and the unused bits of the last character, and each of those would
  // make another token that settles the same lease.
  const given = Buffer.from(signature);
  const expected = Buffer.from(mac(key.secret, body).toString('base64url'));
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    throw new LeaseNotFoundError();
  if (wire.x <= nowMs) throw new LeaseNotFoundError('lease expired');
  return {
    id: wire.i,
    acquiredAtMs: wire.a,
    expiresAtMs: wire.x,
    usage: wire.u,
    items: wire.s.map((s) => ({
      key: { pk: s.p, sk: s.k },
      scope: s.c,
      generation: s.g,
      ...(typeof s.n === 'number' && s.n > 1 ? { shares: s.n } : {}),
      limits: s.l.map(
        (l): LeasedLimit =>
          l[2] === 'b'
            ? {
                kind: 'bucket',
                name: l[0],
                metric: l[1],
                limit: l[3],
                periodSeconds: l[4],
                burst: l[5],
                ...(l[6] === 1 ? { shadow: true as const } : {}),
              }
            : {
                kind: 'quota',
                name: l[0],
                metric: l[1],
                limit: l[3],
                window: l[4],
                timezone: l[5],
                windowStartMs: l[6],
                ...(l[7] === 1 ? { shadow: true as const } : {}),
              },
      ),
    })),
    ...(wire.p ? { price: priceFromText(wire.p) } : {}),
    ...(wire.c ? { context: contextFromWire(wire.c) } : {}),
  };
}

const shadowMark = (limit: { readonly shadow?: true }): [] | [1] => (limit.shadow ? [1] : []);
