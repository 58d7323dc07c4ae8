/**
 * The soak's checks, computed after the run from what was recorded: every request the clients
 * sent and what the servers decided (the taps), every DynamoDB exchange and injected fault (the
 * fault proxy), every SDK call (the workload), the alerts the webhook received, and what the
 * table and the API say at the end.
 *
 * The over-admission oracle is sound: it flags only what no correct limiter could have done.
 * A server decides an acquire somewhere between receiving it and answering it, so a window
 * [a, b] is credited only with admissions that certainly fell inside it (received at or after
 * a, answered by b), and debited with every refund that may have fallen inside it: a lease's
 * settlements (at most what it held above its lowest report) and the give-backs of attempts
 * that straddle a (a refused or failed acquire gives back what it took; a fallback gives back
 * what the resource asked for took). With `r` and `B` the largest rate and burst any definition
 * possibly in force in the window had (an edit reaches the other server within the
 * configuration cache's time), GCRA admits at most `B + r × (b − a)` (plus `r × max_wait_ms`
 * for reservations); a calendar quota admits a call only while what is certainly charged plus
 * the call fits the largest limit possibly in force.
 */
import type { BudgetAlert, Usage } from '@sluice/client';
import type { TapExchange } from './api-tap.js';
import {
  type Charged,
  chainOf,
  chargedLimits,
  ENTITIES,
  type ModelLimit,
  type SoakConfig,
} from './config.js';
import type { InjectedFault, ProxyExchange } from './fault-proxy.js';
import type { AcquireNote, LeaseEvent, LedgerOp, TapNote, WriteNote } from './notes.js';
import type { Receipt } from './webhook-receiver.js';
import { type CallRecord, type ClientLease, totalsOf } from './workload.js';

export type PhaseKind =
  | 'calm'
  | 'throttle'
  | 'internal'
  | 'pause'
  | 'server_kill'
  | 'drop'
  | 'ddb_kill'
  | 'final';

export interface PhaseRecord {
  readonly kind: PhaseKind;
  readonly startMs: number;
  readonly endMs: number;
  readonly note?: string;
}

/** A configuration and when it may have been in force on some server. */
export interface ConfigVersion {
  readonly label: string;
  readonly config: SoakConfig;
  readonly fromMs: number;
  readonly untilMs: number;
}

export interface SoakRecord {
  readonly seconds: number;
  readonly timeoutMs: number;
  readonly slackMs: number;
  /** After an outage phase ends, how long its effects may still show (a backlog draining). */
  readonly graceMs: number;
  readonly phases: readonly PhaseRecord[];
  readonly versions: readonly ConfigVersion[];
  /** Every exchange of the taps, with the index of the server behind each. */
  readonly tap: readonly (TapExchange<TapNote> & { readonly server: number })[];
  readonly proxyExchanges: readonly ProxyExchange<WriteNote>[];
  readonly faults: readonly InjectedFault[];
  readonly calls: readonly CallRecord[];
  readonly leases: readonly ClientLease[];
  /** `pk|sk::attr` → the number stored at the end (quotas' `u_` and `w_`). */
  readonly table: ReadonlyMap<string, number>;
  /** Entity → its usage history summed over the run's days (or why it could not be read). */
  readonly history: ReadonlyMap<string, HistoryTotals | string>;
  readonly alerts: readonly BudgetAlert[];
  readonly receipts: readonly Receipt[];
  /** The largest event-loop delay the harness saw (ms): its own stalls, not the SDK's. */
  readonly loopDelayMaxMs: number;
  /** How often the servers logged each error message (a failed request: its error's message). */
  readonly logCounts: Readonly<Record<string, number>>;
}

export interface HistoryTotals {
  readonly usage: Readonly<Record<string, number>>;
  readonly leases: number;
}

export interface CheckRow {
  readonly name: string;
  readonly expected: string;
  readonly observed: string;
  readonly pass: boolean;
  /** Everything behind the observation, for the report after the table. */
  readonly details: readonly string[];
}

// ---------------------------------------------------------------- what the servers decided

type Exchange = SoakRecord['tap'][number];

/** Whether a request reached its server (a refused connection did not). */
const reached = (x: Exchange) => x.status !== undefined || x.error !== 'ECONNREFUSED';
/** Whether a settlement may have applied: answered 200, or no verdict (5xx, no answer). */
const mayApply = (x: Exchange) =>
  reached(x) && (x.status === undefined || x.status === 200 || x.status >= 500);

interface Settle {
  readonly startMs: number;
  readonly endMs: number;
  readonly status?: number;
  readonly totals: Record<string, number>;
}

/** A lease a server issued (answered 200), whether or not its client heard of it. */
interface ServerLease {
  readonly key: string;
  readonly acquire: Exchange & { readonly note: TapNote & { readonly acquire: AcquireNote } };
  readonly estimate: Record<string, number>;
  readonly settles: Settle[];
}

interface Decisions {
  readonly attempts: readonly (Exchange & { readonly note: { readonly acquire: AcquireNote } })[];
  readonly leases: ReadonlyMap<string, ServerLease>;
}

function decisionsOf(record: SoakRecord): Decisions {
  const attempts = record.tap.filter(
    (x): x is Exchange & { note: TapNote & { acquire: AcquireNote } } =>
      x.note?.acquire !== undefined && reached(x),
  );
  const leases = new Map<string, ServerLease>();
  for (const x of attempts) {
    const lease = x.note.acquire.lease;
    if (x.status === 200 && lease)
      leases.set(lease, {
        key: lease,
        acquire: x,
        estimate: totalsOf(x.note.acquire.usage),
        settles: [],
      });
  }
  for (const x of record.tap) {
    const settle = x.note?.settle;
    if (!settle || !mayApply(x)) continue;
    const lease = leases.get(settle.lease);
    const base = lease?.estimate ?? {};
    // An adjust or a release with usage reports input and output; a release without gives all back.
    const totals = settle.usage === null ? totalsOf(null) : { ...base, ...totalsOf(settle.usage) };
    lease?.settles.push({
      startMs: x.startMs,
      endMs: x.endMs,
      ...(x.status !== undefined ? { status: x.status } : {}),
      totals,
    });
  }
  return { attempts, leases };
}

/** What a lease stands at in the end, as far as the answers say: its last settlement answered 200, else its estimate. */
function standing(lease: ServerLease): Record<string, number> {
  const done = lease.settles.filter((s) => s.status === 200).sort((a, b) => a.endMs - b.endMs);
  return done.at(-1)?.totals ?? lease.estimate;
}

// ---------------------------------------------------------------- limits over time

const bucketId = (c: Charged) => `${c.item}::${c.limit.name}`;

interface Segment {
  readonly fromMs: number;
  readonly untilMs: number;
  readonly limit: ModelLimit;
}

/** Each bucket's definitions, with when each may have been in force. */
function segmentsOf(record: SoakRecord, entity: string, resource: string): Map<string, Segment[]> {
  const out = new Map<string, Segment[]>();
  for (const version of record.versions) {
    for (const c of chargedLimits(version.config, entity, resource)) {
      const list = out.get(bucketId(c)) ?? [];
      list.push({ fromMs: version.fromMs, untilMs: version.untilMs, limit: c.limit });
      out.set(bucketId(c), list);
    }
  }
  return out;
}

/** The largest burst and rate (or quota) of the definitions possibly in force over [a, b]. */
function largest(segments: readonly Segment[], a: number, b: number) {
  let burst = 0;
  let rate = 0;
  let quota = 0;
  for (const s of segments) {
    if (s.untilMs < a || s.fromMs > b) continue;
    if (s.limit.kind === 'bucket') {
      burst = Math.max(burst, s.limit.burst);
      rate = Math.max(rate, s.limit.ratePerMs);
    } else quota = Math.max(quota, s.limit.limit);
  }
  return { burst, rate, quota };
}

// ---------------------------------------------------------------- check 1: over-admission

interface Ev {
  readonly s: number;
  readonly e: number;
  readonly amount: number;
  readonly wait: number;
  readonly lease?: ServerLease;
}

interface Bucket {
  readonly id: string;
  readonly kind: 'bucket' | 'quota';
  readonly metric: string;
  segments: Segment[];
  /** Admissions: answered 200 by a server. */
  readonly admitted: Ev[];
  /** Give-backs that may have happened after a charge (refused, failed and fallen-back attempts). */
  readonly givebacks: Ev[];
  /** Refunds a lease's settlements may have made: at most what it held above its lowest report. */
  readonly refunds: Ev[];
  /** Attempts of unknown outcome (5xx, no answer): admitted for the stricter count. */
  readonly unknown: Ev[];
}

function bucketsOf(record: SoakRecord, decisions: Decisions): Map<string, Bucket> {
  const buckets = new Map<string, Bucket>();
  const [first] = record.versions;
  if (!first) return buckets;
  const touch = (entity: string, resource: string) => {
    const segments = segmentsOf(record, entity, resource);
    return chargedLimits(first.config, entity, resource)
      .filter((c) => !c.limit.shadow)
      .map((c) => {
        const id = bucketId(c);
        let bucket = buckets.get(id);
        if (!bucket) {
          bucket = {
            id,
            kind: c.limit.kind,
            metric: c.limit.metric,
            segments: segments.get(id) ?? [],
            admitted: [],
            givebacks: [],
            refunds: [],
            unknown: [],
          };
          buckets.set(id, bucket);
        }
        return bucket;
      });
  };
  for (const x of decisions.attempts) {
    const ask = x.note.acquire;
    const estimate = totalsOf(ask.usage);
    const tried = [ask.resource, ...ask.fallback];
    const ev = (amount: number, lease?: ServerLease): Ev => ({
      s: x.startMs,
      e: x.endMs,
      amount,
      wait: ask.maxWaitMs,
      ...(lease ? { lease } : {}),
    });
    if (x.status === 200 && ask.admitted) {
      const lease = ask.lease ? decisions.leases.get(ask.lease) : undefined;
      for (const b of touch(ask.entity, ask.admitted))
        if ((estimate[b.metric] ?? 0) > 0) b.admitted.push(ev(estimate[b.metric] ?? 0, lease));
      for (const resource of tried.slice(0, Math.max(0, tried.indexOf(ask.admitted))))
        for (const b of touch(ask.entity, resource)) b.givebacks.push(ev(estimate[b.metric] ?? 0));
      continue;
    }
    const refused = x.status !== undefined && x.status < 500;
    if (refused && x.status !== 429 && x.status !== 422) continue; // 4xx before any write
    for (const resource of tried)
      for (const b of touch(ask.entity, resource)) b.givebacks.push(ev(estimate[b.metric] ?? 0));
    if (!refused)
      for (const b of touch(ask.entity, ask.resource)) b.unknown.push(ev(estimate[b.metric] ?? 0));
  }
  for (const lease of decisions.leases.values()) {
    const ask = lease.acquire.note.acquire;
    if (lease.settles.length === 0 || !ask.admitted) continue;
    for (const b of touch(ask.entity, ask.admitted)) {
      const values = lease.settles.map((s) => s.totals[b.metric] ?? 0);
      const held = Math.max(lease.estimate[b.metric] ?? 0, ...values);
      const amount = held - Math.min(...values);
      if (amount <= 0) continue;
      b.refunds.push({
        s: Math.min(...lease.settles.map((s) => s.startMs)),
        e: Math.max(...lease.settles.map((s) => s.endMs)),
        amount,
        wait: 0,
      });
    }
  }
  return buckets;
}

interface Excess {
  readonly bucket: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly admitted: number;
  readonly allowed: number;
}

/** Every window [a, b] of a token bucket whose certain admissions exceed what GCRA allows. */
interface WindowCheck {
  readonly windows: number;
  readonly over: Excess[];
  /** The largest share of what was allowed that was admitted for certain, in any window. */
  readonly closest: number;
}

function bucketWindows(b: Bucket, admitted: readonly Ev[]): WindowCheck {
  const byEnd = [...admitted].sort((x, y) => x.e - y.e);
  const starts = [...new Set(admitted.map((x) => x.s))].sort((x, y) => x - y);
  const refunds = [...b.refunds].sort((x, y) => x.s - y.s);
  const over: Excess[] = [];
  let windows = 0;
  let closest = 0;
  for (const a of starts) {
    let givenBack = 0;
    for (const g of b.givebacks) if (g.s < a && g.e >= a) givenBack += g.amount;
    let sum = 0;
    let wait = 0;
    let refunded = 0;
    let r = 0;
    let worst: Excess | undefined;
    for (const x of byEnd) {
      if (x.s < a) continue;
      sum += x.amount;
      wait = Math.max(wait, x.wait);
      for (; r < refunds.length && (refunds[r] as Ev).s <= x.e; r++)
        if ((refunds[r] as Ev).e >= a) refunded += (refunds[r] as Ev).amount;
      const { burst, rate } = largest(b.segments, a, x.e);
      const allowed = burst + rate * (x.e - a + wait);
      const certain = sum - refunded - givenBack;
      windows++;
      closest = Math.max(closest, certain / allowed);
      if (
        certain > allowed + 1e-6 &&
        (!worst || certain - allowed > worst.admitted - worst.allowed)
      )
        worst = { bucket: b.id, fromMs: a, toMs: x.e, admitted: certain, allowed };
    }
    if (worst) over.push(worst);
  }
  return { windows, over, closest };
}

/** The least a lease can have held on its quota when another call was decided over [s, e]. */
function heldAtLeast(x: Ev, metric: string, s: number, e: number): number {
  const lease = x.lease;
  if (!lease) return x.amount;
  const before = lease.settles
    .filter((t) => t.status === 200 && t.endMs < s)
    .sort((p, q) => p.endMs - q.endMs);
  let least = before.at(-1)?.totals[metric] ?? x.amount;
  for (const t of lease.settles)
    if (t.startMs < e && !before.includes(t)) least = Math.min(least, t.totals[metric] ?? 0);
  return least;
}

/** Every admission to a quota that what was certainly charged before it leaves no room for. */
function quotaAdmissions(b: Bucket, admitted: readonly Ev[]): WindowCheck {
  const bySend = [...admitted].sort((x, y) => x.s - y.s);
  const over: Excess[] = [];
  let closest = 0;
  for (const j of bySend) {
    let certain = 0;
    for (const k of bySend) if (k !== j && k.e < j.s) certain += heldAtLeast(k, b.metric, j.s, j.e);
    const { quota } = largest(b.segments, j.s, j.e);
    closest = Math.max(closest, (certain + j.amount) / quota);
    if (certain + j.amount > quota)
      over.push({
        bucket: b.id,
        fromMs: j.s,
        toMs: j.e,
        admitted: certain + j.amount,
        allowed: quota,
      });
  }
  return { windows: bySend.length, over, closest };
}

function overAdmission(
  record: SoakRecord,
  decisions: Decisions,
  buckets: ReadonlyMap<string, Bucket>,
): CheckRow {
  let windows = 0;
  const over: Excess[] = [];
  const strictOver: Excess[] = [];
  const unknown = decisions.attempts.filter((x) => x.status === undefined || x.status >= 500);
  let quotas = 0;
  const closest: [string, number][] = [];
  for (const b of buckets.values()) {
    const check = b.kind === 'bucket' ? bucketWindows : quotaAdmissions;
    if (b.kind === 'quota') quotas++;
    const sound = check(b, b.admitted);
    closest.push([b.id, sound.closest]);
    windows += sound.windows;
    over.push(...sound.over);
    const strict = check(b, [...b.admitted, ...b.unknown]);
    strictOver.push(
      ...strict.over.filter(
        (x) => !sound.over.some((y) => y.fromMs === x.fromMs && y.bucket === x.bucket),
      ),
    );
  }
  const t0 = record.phases[0]?.startMs ?? 0;
  const describe = (x: Excess, what = 'admitted for certain') =>
    `${x.bucket}: ${Math.round(x.admitted)} ${what} in [${((x.fromMs - t0) / 1_000).toFixed(2)} s, ${((x.toMs - t0) / 1_000).toFixed(2)} s], at most ${Math.round(x.allowed)} allowed`;
  // The worst window of each bucket, worst first.
  const worstOf = (list: readonly Excess[]) => {
    const byBucket = new Map<string, Excess>();
    for (const x of list) {
      const seen = byBucket.get(x.bucket);
      if (!seen || x.admitted - x.allowed > seen.admitted - seen.allowed) byBucket.set(x.bucket, x);
    }
    return [...byBucket.values()].sort((x, y) => y.admitted - y.allowed - (x.admitted - x.allowed));
  };
  const worst = worstOf(over);
  const worstStrict = worstOf(strictOver);
  return {
    name: '1 over-admission',
    expected: `0 windows over burst + rate × t (${buckets.size - quotas} token buckets), 0 admissions over a daily quota (${quotas})`,
    observed: `${over.length} over of ${windows} windows/admissions${over[0] ? `; worst ${describe(worst[0] as Excess)}` : ''} (if all ${unknown.length} acquires answered 5xx or unanswered had been admitted too: ${over.length + strictOver.length} over)`,
    pass: over.length === 0,
    details: [
      `closest to its bound, per bucket (admitted for certain ÷ allowed, in its fullest window): ${closest
        .sort((x, y) => y[1] - x[1])
        .map(([id, share]) => `${id} ${(share * 100).toFixed(0)}%`)
        .join(', ')}`,
      `windows over, by bucket: ${
        [...new Set(over.map((x) => x.bucket))]
          .map((b) => `${b} ${over.filter((x) => x.bucket === b).length}`)
          .join(', ') || 'none'
      }`,
      ...worst.slice(0, 10).map((x) => `over (answered admissions): ${describe(x)}`),
      ...worstStrict
        .slice(0, 10)
        .map(
          (x) =>
            `over only if every acquire of unknown outcome had been admitted: ${describe(x, 'if so')}`,
        ),
    ],
  };
}

// ---------------------------------------------------------------- check 2: leases settled once

function leasesSettled(record: SoakRecord, decisions: Decisions): CheckRow {
  const received = record.leases;
  const settled = received.filter((l) => l.settledMs !== undefined && l.problems.length === 0);
  const lost = received.filter((l) => l.settledMs === undefined);
  const troubled = received.filter((l) => l.problems.length > 0);
  const repeats = record.calls.filter((c) => c.op === 'repeat_release');
  const retried = received.filter((l) => l.releaseAttempts > 1).length;
  const adjustsSettled = record.calls.filter((c) => c.op === 'adjust' && c.outcome === 'settled?');
  const clientKeys = new Set(received.map((l) => l.key));
  const undelivered = [...decisions.leases.values()].filter((l) => !clientKeys.has(l.key));
  const pass = lost.length === 0 && troubled.length === 0 && adjustsSettled.length === 0;
  return {
    name: '2 leases settled exactly once',
    expected:
      'every lease a client received: one release answered 200 settled, repeats answer the same',
    observed: `${received.length} received, ${settled.length} settled (${retried} after retries), ${lost.length} never settled, ${troubled.length} with wrong answers; ${repeats.length} repeated releases; (${undelivered.length} more issued to clients that had given up)`,
    pass,
    details: [
      ...troubled
        .slice(0, 10)
        .map((l) => `lease ${l.key} (${l.kind}, ${l.entity}): ${l.problems.join('; ')}`),
      ...lost
        .slice(0, 10)
        .map(
          (l) =>
            `lease ${l.key} (${l.kind}, ${l.entity}) never settled after ${l.releaseAttempts} releases`,
        ),
      ...adjustsSettled.slice(0, 5).map((c) => `an adjust of ${c.lease} answered settled: true`),
      `${undelivered.length} leases were issued by a server after their client's deadline (the acquire charged, the client never learned the lease)`,
    ],
  };
}

// ---------------------------------------------------------------- checks 3 and 4: totals

/** What a client-received lease stands at: its final release, else what the server answered last. */
function clientStanding(lease: ClientLease, decisions: Decisions): Record<string, number> {
  if (lease.settledMs !== undefined && lease.final !== undefined) return totalsOf(lease.final);
  const server = decisions.leases.get(lease.key);
  return server ? standing(server) : totalsOf(lease.estimate);
}

type Write = ProxyExchange<WriteNote>;
const applied = (x: Write) => x.outcome === 'applied' || x.outcome === 'dropped';

/**
 * Writes the proxy dropped after they applied, charged again by their server, which could not
 * know they had applied: `resent`, the same request sent again and applied; `replanned`, a
 * later write charging the same item for the same lease's acquire (the resend failed its
 * condition, which the write itself had changed, and the acquire decided again); `refused`,
 * resent and refused by its condition with no later write of the same lease seen (an item that
 * carries no event: it may or may not have been charged again).
 */
function chargedAgain(
  record: SoakRecord,
): { kind: 'resent' | 'replanned' | 'refused'; write: Write }[] {
  const writes = [...record.proxyExchanges].sort((a, b) => a.id - b.id);
  const out: { kind: 'resent' | 'replanned' | 'refused'; write: Write }[] = [];
  for (const [i, d] of writes.entries()) {
    if (d.outcome !== 'dropped') continue;
    const later = writes.slice(i + 1).filter((x) => x.startMs >= d.endMs);
    if (later.some((x) => x.bodyHash === d.bodyHash && applied(x))) {
      out.push({ kind: 'resent', write: d });
      continue;
    }
    const events = (d.note?.events ?? []).filter((e) => e.version === 0);
    const sameLease = (x: Write) =>
      (x.note?.events ?? []).some((e) =>
        events.some((f) => f.item === e.item && f.lease === e.lease && e.version === 0),
      );
    if (later.some((x) => applied(x) && sameLease(x))) out.push({ kind: 'replanned', write: d });
    else if (later.some((x) => x.bodyHash === d.bodyHash && x.outcome === 'refused'))
      out.push({ kind: 'refused', write: d });
  }
  return out;
}

function ledgerSum(exchanges: readonly Write[], item: string, attr: string) {
  let value = 0;
  let unreplayable = 0;
  for (const x of exchanges.filter(applied).sort((a, b) => a.endMs - b.endMs))
    for (const op of x.note?.ops ?? [])
      if (op.item === item && op.attr === attr) {
        if (Number.isNaN(op.value)) unreplayable++;
        else value = op.op === 'set' ? op.value : value + op.value;
      }
  const unknown = exchanges.filter(
    (x) =>
      x.outcome === 'unknown' &&
      (x.note?.ops ?? []).some((op) => op.item === item && op.attr === attr),
  ).length;
  return { value, unreplayable, unknown };
}

/**
 * Acquires that charged and whose charge no one holds: the write carrying their usage event
 * applied, no give-back cancelled it, and no server answered 200 with that lease (the acquire
 * failed, or its server died). Their charges stay and usage history counts them.
 */
interface Orphan {
  readonly lease: string;
  readonly event: LeaseEvent;
  /** What its first applied write did to quotas' used amounts. */
  readonly ops: readonly LedgerOp[];
  /** When the write that applied it was sent to DynamoDB, and when its answer came. */
  readonly sentMs: number;
  readonly atMs: number;
}

function orphansOf(record: SoakRecord, decisions: Decisions): Orphan[] {
  const issued = new Set<string>();
  for (const lease of decisions.leases.values()) {
    const id = lease.acquire.note.acquire.id;
    if (id) issued.add(id);
  }
  const charged = new Map<string, Orphan>();
  const cancelled = new Set<string>();
  for (const x of [...record.proxyExchanges].sort((a, b) => a.endMs - b.endMs)) {
    if (!applied(x)) continue;
    for (const event of x.note?.events ?? []) {
      if (event.version !== 0) cancelled.add(event.lease);
      else if (!charged.has(event.lease))
        charged.set(event.lease, {
          lease: event.lease,
          event,
          ops: (x.note?.ops ?? []).filter((op) => op.item === event.item),
          sentMs: x.startMs,
          atMs: x.endMs,
        });
    }
  }
  const ours = new Set<string>(ENTITIES);
  return [...charged.values()].filter(
    (o) =>
      !cancelled.has(o.lease) &&
      !issued.has(o.lease) &&
      o.event.entities.some((entity) => ours.has(entity)),
  );
}

/**
 * Charges on a quota that refused or failed acquires left behind. Exactly, first: the charges
 * that carried the usage event of an acquire that left it (see {@link orphansOf}). Then, for
 * each other refused or failed attempt, a write adding its estimate while the attempt was in its
 * server's hands, with no later give-back (an `UpdateItem`: settlements are transactions)
 * taking that amount back: matched by amount and time, an explanation rather than a proof.
 */
function leftBehind(
  record: SoakRecord,
  decisions: Decisions,
  orphans: readonly Orphan[],
  item: string,
  attr: string,
  metric: string,
): { amount: number; count: number; exact: number } {
  const orphaned = new Set(orphans.map((o) => o.lease));
  const ops = [...record.proxyExchanges]
    .filter(applied)
    .sort((a, b) => a.endMs - b.endMs)
    .flatMap((x) =>
      (x.note?.ops ?? [])
        .filter((op) => op.item === item && op.attr === attr && op.op === 'add')
        .map((op) => ({
          startMs: x.startMs,
          endMs: x.endMs,
          value: op.value,
          single: x.target.endsWith('.UpdateItem'),
          orphan: (x.note?.events ?? []).some(
            (e) => e.item === item && e.version === 0 && orphaned.has(e.lease),
          ),
          used: false,
        })),
    );
  let amount = 0;
  let count = 0;
  let exact = 0;
  for (const op of ops.filter((o) => o.orphan)) {
    op.used = true;
    amount += op.value;
    count++;
    exact++;
  }
  const entity = entityOf(item);
  const first = record.versions[0];
  for (const a of decisions.attempts) {
    if (a.status === 200 || !first) continue;
    if (!chainOf(first.config, a.note.acquire.entity).includes(entity)) continue;
    const x = totalsOf(a.note.acquire.usage)[metric] ?? 0;
    const charge = ops.find(
      (o) =>
        !o.used &&
        o.single &&
        o.value === x &&
        o.startMs >= a.startMs - 10 &&
        o.endMs <= a.endMs + 10,
    );
    if (!charge) continue;
    charge.used = true;
    const back = ops.find(
      (o) => !o.used && o.single && o.value === -x && o.startMs >= charge.endMs,
    );
    if (back) back.used = true;
    else {
      amount += x;
      count++;
    }
  }
  return { amount, count, exact };
}

const entityOf = (item: string) => item.replace(/^entity#/, '').replace(/\|\*$/, '');

function quotaTotals(
  record: SoakRecord,
  decisions: Decisions,
  buckets: ReadonlyMap<string, Bucket>,
): CheckRow {
  const [first] = record.versions;
  const quotas = [...buckets.values()].filter((b) => b.kind === 'quota');
  const twice = chargedAgain(record);
  const orphans = orphansOf(record, decisions);
  const clientKeys = new Set(record.leases.map((l) => l.key));
  const details: string[] = [];
  let wrong = 0;
  const observed: string[] = [];
  for (const b of quotas) {
    const [item = '', name = ''] = b.id.split('::');
    const attr = `u_${name}`;
    let model = 0;
    for (const lease of record.leases) {
      if (!first) break;
      const charged = chargedLimits(first.config, lease.entity, lease.resource).some(
        (c) => bucketId(c) === b.id,
      );
      if (charged) model += clientStanding(lease, decisions)[b.metric] ?? 0;
    }
    let undelivered = 0;
    let undeliveredCount = 0;
    for (const lease of decisions.leases.values()) {
      const ask = lease.acquire.note.acquire;
      if (clientKeys.has(lease.key) || !ask.admitted || !first) continue;
      if (chargedLimits(first.config, ask.entity, ask.admitted).some((c) => bucketId(c) === b.id)) {
        undelivered += standing(lease)[b.metric] ?? 0;
        undeliveredCount++;
      }
    }
    const again = { resent: 0, replanned: 0, refused: 0 };
    for (const { kind, write } of twice)
      for (const op of write.note?.ops ?? [])
        if (op.item === item && op.attr === attr && op.op === 'add') again[kind] += op.value;
    const double = again.resent + again.replanned;
    const table = record.table.get(`${item}::${attr}`);
    const diff = (table ?? 0) - model;
    const left =
      diff === 0
        ? { amount: 0, count: 0, exact: 0 }
        : leftBehind(record, decisions, orphans, item, attr, b.metric);
    const orphaned = left.amount;
    const orphanCount = left.count;
    const withEvent = left.exact;
    const ledger = ledgerSum(record.proxyExchanges, item, attr);
    const rest = diff - undelivered - double - orphaned;
    if (table === undefined || diff !== 0) wrong++;
    const short = `${entityOf(item)} ${name}`;
    const parts = [
      undelivered ? `${undelivered} issued after the client gave up (${undeliveredCount})` : '',
      orphaned ? `${orphaned} refused or failed acquires left charged (${orphanCount})` : '',
      double ? `${double} charged twice` : '',
      rest ? `${rest} unexplained` : '',
    ].filter(Boolean);
    if (diff !== 0 || table === undefined)
      observed.push(
        `${short} ${table === undefined ? 'absent' : `${diff > 0 ? '+' : ''}${diff}`}${parts.length ? ` (${parts.join(', ')})` : ''}`,
      );
    details.push(
      `${short}: table ${table ?? 'absent'}, model ${model} (what clients settled, and estimates of leases they hold), difference ${diff}: ` +
        `${undelivered} from ${undeliveredCount} leases a server issued after their client had given up; ` +
        `${orphaned} from ${orphanCount} refused or failed acquires whose charge here applied and was never given back (matched by amount and time; ${withEvent} of them carried their usage event here, so history counts them too); ` +
        `${double} from writes charged twice (their answer dropped after they applied: ${again.resent} sent again as they were, ${again.replanned} decided again${again.refused ? `; up to ${again.refused} more resent, refused, perhaps decided again` : ''}); ` +
        `${rest} not explained by these. ` +
        `DynamoDB ledger (every write the proxy saw apply, replayed): ${ledger.value}${ledger.unreplayable ? `, ${ledger.unreplayable} writes it cannot replay` : ''}${ledger.unknown ? `, ${ledger.unknown} writes of unknown outcome (DynamoDB died with them)` : ''}`,
    );
  }
  const kept = Object.entries(record.logCounts)
    .filter(([message]) => /stays charged/.test(message))
    .reduce((sum, [, n]) => sum + n, 0);
  const t0 = record.phases[0]?.startMs ?? 0;
  return {
    name: '3 quota totals = model',
    expected: `${quotas.length} daily quotas' used (table) = what clients settled + estimates of unsettled leases`,
    observed:
      wrong === 0 ? `all ${quotas.length} equal` : `${wrong} differ: ${observed.join('; ')}`,
    pass: wrong === 0,
    details: [
      ...details,
      `${orphans.length} failed acquires left their usage event (it applied, was never cancelled, no lease was issued): ${orphans
        .slice(0, 12)
        .map(
          (o) =>
            `${o.event.item} ${o.event.usage.tokens ?? 0} tokens at ${((o.atMs - t0) / 1_000).toFixed(2)} s`,
        )
        .join(', ')}`,
      `the servers logged ${kept} writes kept charged because their answer was lost ("stays charged")`,
    ],
  };
}

const METRICS = ['requests', 'tokens', 'input_tokens', 'output_tokens'] as const;

/** Per entity (and each ancestor), the totals usage history should show, and its lease count. */
export function historyModel(
  config: SoakConfig,
  leases: readonly ClientLease[],
  standingOf: (lease: ClientLease) => Record<string, number>,
): Map<string, HistoryTotals> {
  const out = new Map<string, { usage: Record<string, number>; leases: number }>();
  for (const lease of leases) {
    const totals = standingOf(lease);
    const used = METRICS.some((m) => (totals[m] ?? 0) > 0);
    for (const entity of chainOf(config, lease.entity)) {
      const entry = out.get(entity) ?? { usage: {}, leases: 0 };
      for (const m of METRICS) entry.usage[m] = (entry.usage[m] ?? 0) + (totals[m] ?? 0);
      if (used) entry.leases++;
      out.set(entity, entry);
    }
  }
  return out;
}

/** The model of usage history from the run's record (for the checks and for waiting on it). */
export function expectedHistory(
  record: Pick<SoakRecord, 'versions' | 'leases' | 'tap'>,
): Map<string, HistoryTotals> {
  const decisions = decisionsOf(record as SoakRecord);
  const [first] = record.versions;
  if (!first) return new Map();
  return historyModel(first.config, record.leases, (lease) => clientStanding(lease, decisions));
}

function usageHistory(record: SoakRecord, decisions: Decisions): CheckRow {
  const [first] = record.versions;
  const details: string[] = [];
  const observed: string[] = [];
  let wrong = 0;
  if (!first)
    return {
      name: '4 usage history',
      expected: '',
      observed: 'no configuration',
      pass: false,
      details,
    };
  const model = historyModel(first.config, record.leases, (lease) =>
    clientStanding(lease, decisions),
  );
  const clientKeys = new Set(record.leases.map((l) => l.key));
  const undelivered = [...decisions.leases.values()].filter((l) => !clientKeys.has(l.key));
  type Extra = { usage: Record<string, number>; leases: number };
  const add = (into: Map<string, Extra>, entities: readonly string[], totals: Usage) => {
    for (const entity of entities) {
      const entry = into.get(entity) ?? { usage: {}, leases: 0 };
      for (const m of METRICS) entry.usage[m] = (entry.usage[m] ?? 0) + (totals[m] ?? 0);
      entry.leases++;
      into.set(entity, entry);
    }
  };
  const extra = new Map<string, Extra>();
  for (const lease of undelivered)
    add(extra, chainOf(first.config, lease.acquire.note.acquire.entity), standing(lease));
  // A server killed mid-acquire can neither answer nor give back: the charge of an acquire in
  // flight on it when it died stays, with its usage event, and history counts it as the quota
  // does. Such an orphan is matched to that request: the killed server's acquire for one of the
  // event's entities with the same estimate, never answered, cut off in a server_kill phase, in
  // flight when the write was sent.
  const kills = record.phases.filter((p) => p.kind === 'server_kill');
  const sameEstimate = (asked: Usage, event: Usage) =>
    Object.entries(asked).every(([metric, n]) => (event[metric] ?? 0) === n);
  const cutOff = (o: Orphan) =>
    record.tap.some(
      (x) =>
        x.server === 1 &&
        x.status === undefined &&
        x.note?.acquire !== undefined &&
        o.event.entities.includes(x.note.acquire.entity) &&
        sameEstimate(x.note.acquire.usage, o.event.usage) &&
        x.startMs <= o.sentMs &&
        o.sentMs <= x.endMs &&
        kills.some((k) => k.startMs <= x.endMs && x.endMs <= k.endMs),
    );
  const orphans = orphansOf(record, decisions);
  const killed = new Map<string, Extra>();
  const orphaned = new Map<string, Extra>();
  for (const o of orphans) add(cutOff(o) ? killed : orphaned, o.event.entities, o.event.usage);
  if (killed.size > 0)
    details.push(
      `counted as history counts them: ${orphans.filter(cutOff).length} acquires in flight on the killed server whose charge and usage event applied (never answered, never given back)`,
    );
  for (const entity of ENTITIES) {
    const settled = model.get(entity) ?? { usage: {}, leases: 0 };
    const cut = killed.get(entity);
    const want = cut
      ? {
          usage: Object.fromEntries(
            METRICS.map((m) => [m, (settled.usage[m] ?? 0) + (cut.usage[m] ?? 0)]),
          ),
          leases: settled.leases + cut.leases,
        }
      : settled;
    const got = record.history.get(entity);
    if (typeof got === 'string' || got === undefined) {
      wrong++;
      observed.push(`${entity} unreadable`);
      details.push(`${entity}: usage history could not be read: ${got ?? 'not asked'}`);
      continue;
    }
    const diffs = METRICS.flatMap((m) => {
      const d = (got.usage[m] ?? 0) - (want.usage[m] ?? 0);
      return d === 0 ? [] : [`${m} ${d > 0 ? '+' : ''}${d}`];
    });
    const leaseDiff = got.leases - want.leases;
    if (leaseDiff !== 0) diffs.push(`leases ${leaseDiff > 0 ? '+' : ''}${leaseDiff}`);
    if (diffs.length > 0) {
      wrong++;
      const more = extra.get(entity);
      const lost = orphaned.get(entity);
      const tokens = (got.usage.tokens ?? 0) - (want.usage.tokens ?? 0);
      const rest = tokens - (more?.usage.tokens ?? 0) - (lost?.usage.tokens ?? 0);
      const parts = [
        more ? `${more.usage.tokens ?? 0} issued after the client gave up (${more.leases})` : '',
        lost ? `${lost.usage.tokens ?? 0} failed acquires left charged (${lost.leases})` : '',
        rest ? `${rest} unexplained` : '',
      ].filter(Boolean);
      observed.push(
        `${entity} ${tokens > 0 ? '+' : ''}${tokens} tokens, ${leaseDiff > 0 ? '+' : ''}${leaseDiff} leases${parts.length ? ` (${parts.join(', ')})` : ''}`,
      );
      details.push(
        `${entity}: history ${JSON.stringify(got.usage)} in ${got.leases} leases, settled ${JSON.stringify(want.usage)} in ${want.leases}: ${diffs.join(', ')}` +
          (more
            ? `; leases a server issued after their client gave up: tokens ${more.usage.tokens ?? 0} in ${more.leases}`
            : '') +
          (lost
            ? `; failed acquires whose usage event stayed (never given back): tokens ${lost.usage.tokens ?? 0} in ${lost.leases}`
            : ''),
      );
    }
  }
  return {
    name: '4 usage history = settled',
    expected: `GET /v1/usage (day) of ${ENTITIES.length} entities = settled totals, to the unit`,
    observed:
      wrong === 0 ? `all ${ENTITIES.length} equal` : `${wrong} differ: ${observed.join(', ')}`,
    pass: wrong === 0,
    details,
  };
}

// ---------------------------------------------------------------- check 5: alerts

interface AlertKey {
  readonly entity: string | null;
  readonly resource: string | null;
  readonly limit: string;
  readonly window: string;
  readonly threshold: number;
}

const alertId = (a: AlertKey) => `${a.entity}|${a.resource}|${a.limit}|${a.window}|${a.threshold}`;

function budgetAlerts(
  record: SoakRecord,
  decisions: Decisions,
  buckets: ReadonlyMap<string, Bucket>,
): CheckRow {
  const last = record.versions.at(-1);
  const [first] = record.versions;
  const details: string[] = [];
  const webhook = new Map<string, number>();
  for (const r of record.receipts) {
    const detail = (r.body as { detail?: AlertKey }).detail;
    if (!detail) continue;
    webhook.set(alertId(detail), (webhook.get(alertId(detail)) ?? 0) + 1);
  }
  const listed = new Map<string, number>();
  for (const a of record.alerts) listed.set(alertId(a), (listed.get(alertId(a)) ?? 0) + 1);
  const undeliveredListed = record.alerts.filter((a) => !a.delivered);
  const duplicates = [...webhook].filter(([, n]) => n > 1).map(([id, n]) => `${id} received ${n}×`);
  duplicates.push(...[...listed].filter(([, n]) => n > 1).map(([id, n]) => `${id} listed ${n}×`));
  const onlyWebhook = [...webhook.keys()].filter((id) => !listed.has(id));
  const onlyListed = [...listed.keys()].filter((id) => !webhook.has(id));

  const required = new Set<string>();
  const allowed = new Set<string>();
  for (const b of buckets.values()) {
    if (b.kind !== 'quota' || !first || !last) continue;
    const [item = '', name = ''] = b.id.split('::');
    const finalLimit = b.segments
      .filter((s) => s.untilMs === Number.POSITIVE_INFINITY)
      .at(-1)?.limit;
    const limits = b.segments.map((s) => s.limit).filter((l) => l.kind === 'quota');
    if (finalLimit?.kind !== 'quota' || limits.length === 0) continue;
    const window = record.table.get(`${item}::w_${name}`);
    const used = record.table.get(`${item}::u_${name}`) ?? 0;
    let model = 0;
    for (const lease of record.leases)
      if (
        chargedLimits(first.config, lease.entity, lease.resource).some((c) => bucketId(c) === b.id)
      )
        model += clientStanding(lease, decisions)[b.metric] ?? 0;
    // The most `used` can ever have stood at: every admission at the most it held, and every
    // attempt of unknown outcome at its estimate.
    let peak = 0;
    for (const x of b.admitted) {
      const held = x.lease
        ? Math.max(x.amount, ...x.lease.settles.map((s) => s.totals[b.metric] ?? 0))
        : x.amount;
      peak += held;
    }
    for (const x of b.unknown) peak += x.amount;
    peak = Math.max(peak, used);
    const lowest = Math.min(
      ...limits.map((l) => (l.kind === 'quota' ? l.limit : Number.POSITIVE_INFINITY)),
    );
    const entity = item.slice('entity#'.length, item.indexOf('|'));
    if (window === undefined) continue;
    const windowIso = new Date(window).toISOString();
    for (const threshold of finalLimit.alerts) {
      const key: AlertKey = { entity, resource: null, limit: name, window: windowIso, threshold };
      if (Math.min(model, used) >= Math.ceil(threshold * finalLimit.limit))
        required.add(alertId(key));
      if (peak >= Math.ceil(threshold * lowest)) allowed.add(alertId(key));
    }
    details.push(
      `${entity} ${name}: used ${used} (model ${model}, at most ever ${peak}), limit ${finalLimit.limit} now (lowest ${lowest}), alerts ${finalLimit.alerts.join('/')}`,
    );
  }
  const missing = [...required].filter((id) => !listed.has(id));
  const unexpected = [...listed.keys()].filter((id) => !allowed.has(id));
  const pass =
    duplicates.length === 0 &&
    onlyWebhook.length === 0 &&
    onlyListed.length === 0 &&
    undeliveredListed.length === 0 &&
    missing.length === 0 &&
    unexpected.length === 0;
  const problems = [
    duplicates.length ? `${duplicates.length} duplicated` : '',
    onlyWebhook.length ? `${onlyWebhook.length} received but not listed` : '',
    onlyListed.length ? `${onlyListed.length} listed but never received` : '',
    undeliveredListed.length ? `${undeliveredListed.length} listed undelivered` : '',
    missing.length ? `${missing.length} missing` : '',
    unexpected.length ? `${unexpected.length} unexpected` : '',
  ].filter(Boolean);
  return {
    name: '5 budget alerts once',
    expected: `one per threshold reached (${required.size} required), webhook = GET /v1/admin/alerts, no duplicates`,
    observed: `${record.receipts.length} received, ${record.alerts.length} listed${problems.length ? `: ${problems.join(', ')}` : ', all agree'}`,
    pass,
    details: [
      ...details,
      ...duplicates.map((d) => `duplicate: ${d}`),
      ...onlyWebhook.map((d) => `received by the webhook, not listed: ${d}`),
      ...onlyListed.map((d) => `listed, never received by the webhook: ${d}`),
      ...undeliveredListed.map((a) => `listed as undelivered: ${alertId(a)}`),
      ...missing.map(
        (d) => `missing (threshold reached under the limit in force at the end): ${d}`,
      ),
      ...unexpected.map(
        (d) => `unexpected (usage never reached it under any limit in force): ${d}`,
      ),
    ],
  };
}

// ---------------------------------------------------------------- checks 6 and 7: outages

/** Whether [s, e] meets an outage phase (or its grace after it). */
function duringOutage(record: SoakRecord, s: number, e: number): boolean {
  return record.phases.some(
    (p) =>
      p.kind !== 'calm' && p.kind !== 'final' && s <= p.endMs + record.graceMs && e >= p.startMs,
  );
}

function serverErrors(record: SoakRecord): CheckRow {
  const fivexx = record.tap.filter((x) => (x.status ?? 0) >= 500);
  const calm = fivexx.filter((x) => !duringOutage(record, x.startMs, x.endMs));
  const not503 = fivexx.filter((x) => x.status !== 503);
  const bad503 = fivexx.filter(
    (x) =>
      x.status === 503 &&
      (!x.note?.problem?.retryAfter ||
        !x.note.problem.contentType?.startsWith('application/problem+json') ||
        x.note.problem.code !== 'unavailable'),
  );
  const noRetryAfter = bad503.filter((x) => !x.note?.problem?.retryAfter).length;
  const byKind = new Map<string, number>();
  for (const x of fivexx) {
    const k = `${x.status} ${x.note?.route ?? x.path} ${x.note?.problem?.code ?? '-'}`;
    byKind.set(k, (byKind.get(k) ?? 0) + 1);
  }
  const t0 = record.phases[0]?.startMs ?? 0;
  return {
    name: '6 5xx only 503, only in outages',
    expected:
      '5xx only 503 + Retry-After + problem+json `unavailable`, during outages; none in calm phases',
    observed: `${fivexx.length} 5xx: ${not503.length} not 503, ${bad503.length} 503 malformed (${noRetryAfter} without Retry-After), ${calm.length} in calm phases`,
    pass: not503.length === 0 && bad503.length === 0 && calm.length === 0,
    details: [
      ...[...byKind].map(([k, n]) => `${n}× ${k}`),
      ...calm
        .slice(0, 10)
        .map(
          (x) =>
            `in a calm phase: ${x.status} ${x.path} at ${((x.startMs - t0) / 1_000).toFixed(2)}–${((x.endMs - t0) / 1_000).toFixed(2)} s`,
        ),
    ],
  };
}

function deadlines(record: SoakRecord): CheckRow {
  const limit = record.timeoutMs + record.slackMs;
  const late = record.calls.filter((c) => c.endMs - c.startMs > limit);
  const slowest = record.calls.reduce((m, c) => Math.max(m, c.endMs - c.startMs), 0);
  return {
    name: '7a SDK decides within its deadline',
    expected: `every SDK call ≤ timeoutMs ${record.timeoutMs} + ${Math.round(record.slackMs)} ms`,
    observed: `${late.length} of ${record.calls.length} later; slowest ${slowest} ms (harness event-loop delay max ${record.loopDelayMaxMs.toFixed(0)} ms)`,
    pass: late.length === 0,
    details: late
      .slice(0, 10)
      .map(
        (c) =>
          `${c.op} (${c.kind ?? '-'}) via server ${c.server} took ${c.endMs - c.startMs} ms: ${c.outcome}`,
      ),
  };
}

function degradedAnswers(record: SoakRecord): CheckRow {
  const degraded = record.calls.filter((c) => c.degraded);
  const outside = degraded.filter((c) => !duringOutage(record, c.startMs, c.endMs));
  const wrongMode = degraded.filter(
    (c) =>
      c.op === 'acquire' &&
      ((c.mode === 'allow' && c.outcome !== 'allowed_degraded') ||
        (c.mode === 'deny' && c.outcome !== 'unavailable')),
  );
  const t0 = record.phases[0]?.startMs ?? 0;
  return {
    name: '7b degraded only in outages',
    expected:
      "`degraded` answers only during outages; 'allow' clients admitted, 'deny' clients refused",
    observed: `${degraded.length} degraded (${degraded.filter((c) => c.op === 'acquire').length} acquires): ${outside.length} outside outages, ${wrongMode.length} against their mode`,
    pass: outside.length === 0 && wrongMode.length === 0,
    details: [
      ...outside
        .slice(0, 10)
        .map(
          (c) =>
            `degraded outside outages: ${c.op} via server ${c.server} at ${((c.startMs - t0) / 1_000).toFixed(2)}–${((c.endMs - t0) / 1_000).toFixed(2)} s`,
        ),
      ...wrongMode.slice(0, 10).map((c) => `${c.mode} client answered ${c.outcome}`),
    ],
  };
}

/** Every check, in order. */
export function checks(record: SoakRecord): CheckRow[] {
  const decisions = decisionsOf(record);
  const buckets = bucketsOf(record, decisions);
  return [
    overAdmission(record, decisions, buckets),
    leasesSettled(record, decisions),
    quotaTotals(record, decisions, buckets),
    usageHistory(record, decisions),
    budgetAlerts(record, decisions, buckets),
    serverErrors(record),
    deadlines(record),
    degradedAnswers(record),
  ];
}

/** Counts for the summary: what the servers decided, per route and status. */
export function decisionCounts(record: SoakRecord): Map<string, number> {
  const counts = new Map<string, number>();
  for (const x of record.tap) {
    const key = `${x.note?.route ?? x.path} ${x.status ?? x.error ?? '?'}${x.clientGone ? ' (client gone)' : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
