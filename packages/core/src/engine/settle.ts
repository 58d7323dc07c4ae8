/**
 * adjust and release: one transaction of the lease item and the bucket deltas. The lease item's
 * version makes a retried, reordered or concurrent duplicate apply exactly once. Adjusts report
 * running totals, which only grow: a late copy of an older adjust changes nothing. A release
 * sets the final totals exactly (or, with no usage, cancels), after which the lease is settled.
 * Refunds return only what the lease still holds (see items.ts). A settlement is bounded by its
 * deadline like every decision (budget.ts): past it the answer is 503, and the write in flight
 * may still land, which the lease item's version keeps exactly-once.
 */
import { canonicalJson } from '../canonical.js';
import { withCost } from '../catalog/price.js';
import {
  DeadlineExceededError,
  LeaseSettledError,
  StoreUnavailableError,
  ValidationError,
} from '../errors.js';
import { itemKeys, shardOf } from '../store/schema.js';
import type {
  ItemCheck,
  ItemKey,
  ItemUpdate,
  TransactFailure,
  TransactResult,
} from '../store/types.js';
import { Budget, beforeDeadline } from './budget.js';
import { deltaUpdates, zeroed } from './items.js';
import { type LeaseClaims, type LeasedItem, verifyLease } from './lease.js';
import { laterDebts, laterRecord, leaseRecordFrom, leaseUpdate } from './lease-record.js';
import { amountOf, MAX_AMOUNT, MAX_LEASE_METRICS, parseUsageMap, type Usage } from './limits.js';
import { learnFailed, rememberCommitted } from './remembered-writes.js';
import { findRoom, TRANSACTION_ITEMS } from './spill.js';
import { type EngineState, type LeaseRecord, sleep } from './state.js';
import { scopeStatuses } from './statuses.js';
import type { SettleResult } from './types.js';

/** What a settlement asks for. */
type Settlement =
  | { readonly kind: 'adjust'; readonly given: Usage }
  | { readonly kind: 'final'; readonly given: Usage }
  | { readonly kind: 'cancel' };

/**
 * Reports the lease's actual usage so far: running totals, not increments. Each metric only
 * grows: a value below one already reported for it (a late or reordered copy) changes nothing.
 * Metrics never reported keep the estimate. May be called repeatedly while a stream runs.
 */
export async function adjust(
  engine: EngineState,
  leaseId: string,
  usage: Usage,
  options?: SettleOptions,
): Promise<SettleResult> {
  const claims = await verify(engine, leaseId, options);
  const given = parseUsageMap(usage);
  return settle(engine, leaseId, claims, { kind: 'adjust', given }, options?.signal);
}

/**
 * Settles a lease with its final totals (exactly as given; metrics left out keep the last
 * reported value, else the estimate), or, without `usage`, cancels it: what it took is given
 * back as far as it has not refilled (the call failed and cost nothing).
 */
export async function release(
  engine: EngineState,
  leaseId: string,
  usage?: Usage,
  options?: SettleOptions,
): Promise<SettleResult> {
  const claims = await verify(engine, leaseId, options);
  const ask: Settlement =
    usage === undefined ? { kind: 'cancel' } : { kind: 'final', given: parseUsageMap(usage) };
  return settle(engine, leaseId, claims, ask, options?.signal);
}

/** What a settlement checks beyond the lease's signature. */
export interface SettleOptions {
  /**
   * Refuses the request for the lease's entity (throws), e.g. a caller its `callers` do not
   * name; called before anything is written, with the entity the lease was acquired for and its
   * ancestors then, nearest first. (A lease acquired without a usage context names no entity,
   * and is not checked: the HTTP API always gives one.)
   */
  readonly authorize?: (entity: string, ancestors: readonly string[]) => Promise<void>;
  /**
   * The request's deadline: once it aborts the settlement answers `DeadlineExceededError`; a
   * write already sent may still land, and the same settlement again applies once either way.
   */
  readonly signal?: AbortSignal | undefined;
}

/** The claims of a token, checked with the key it names, then authorized for its entity. */
async function verify(
  engine: EngineState,
  token: string,
  options: SettleOptions = {},
): Promise<LeaseClaims> {
  const find = (keyId: string, signedAtMs: number) =>
    beforeDeadline(engine.keys.find(keyId, signedAtMs), options.signal);
  const claims = await verifyLease(token, find, engine.clock());
  const [own, ...ancestors] = claims.context?.scopes ?? [];
  if (options.authorize && own) {
    const ids = ancestors.map((scope) => scope.entity);
    await beforeDeadline(options.authorize(own.entity, ids), options.signal);
  }
  return claims;
}

async function settle(
  engine: EngineState,
  leaseId: string,
  claims: LeaseClaims,
  ask: Settlement,
  signal: AbortSignal | undefined,
): Promise<SettleResult> {
  const budget = new Budget(engine.tuning.maxSettleAttempts, signal);
  const leaseKey = itemKeys.lease(claims.id);
  // What this process remembers of the lease may be older than the table: a settled record is
  // final and may answer alone; an unsettled one only makes the first write's guess, and is read
  // from the table before it answers (another process may have settled the lease since).
  let record = engine.leases.get(claims.id);
  let confirmed = false;
  let roomFound = false;
  for (let conflicts = 0; !budget.expired; ) {
    const nowMs = engine.clock();
    const plan = planSettlement(engine, claims, record, ask, nowMs);
    if (record?.settled) {
      // The same release again answers as the first did.
      if (plan.fingerprint !== undefined && record.fingerprint === plan.fingerprint) {
        if (confirmed) await budget.within(readItems(engine, claims));
        const answer = settlementAnswer(engine, leaseId, claims, record.totals, true, nowMs);
        return { ...answer, repeated: true };
      }
      throw new LeaseSettledError();
    }
    if (ask.kind === 'adjust' && record && plan.nothingNew) {
      // Nothing new (the same adjust again, or a late copy of an earlier one), if the table says so.
      if (confirmed) {
        await budget.within(readItems(engine, claims));
        return settlementAnswer(engine, leaseId, claims, record.totals, false, nowMs);
      }
      record = leaseRecordFrom(await budget.within(engine.store.get(leaseKey)));
      confirmed = true;
      continue;
    }
    if (plan.unplaced.length > 0 && !roomFound && budget.waited()) {
      // A refund no shard this process remembers can hold: read them, wait for a split.
      roomFound = await budget.within(findRoom(engine, plan.unplaced));
      continue;
    }
    const result = await budget.within(writeSettlement(engine, plan));
    if (result.ok) {
      engine.leases.set(claims.id, plan.record);
      rememberCommitted(
        engine,
        plan.items.map(({ update }) => update),
      );
      return settlementAnswer(
        engine,
        leaseId,
        claims,
        plan.record.totals,
        plan.record.settled,
        nowMs,
      );
    }
    roomFound = false; // a split since may have moved what a refund's rest was to find
    const learnt = learn(engine, plan, result.failures);
    if (learnt.record !== null) {
      record = learnt.record;
      confirmed = true;
    }
    let more: boolean;
    if (learnt.splitting.length > 0) {
      // A shard frozen for a split: wait for it (not an attempt), or complete a stale split.
      await budget.within(Promise.all(learnt.splitting));
      more = budget.waited();
    } else more = budget.lost();
    if (!more) break;
    if (learnt.conflict) await budget.within(sleep(Math.random() * 5 * 2 ** conflicts++));
  }
  if (budget.expired) throw new DeadlineExceededError();
  throw new StoreUnavailableError('lease settlement kept conflicting; retry');
}

/** A settlement's writes: the lease item's next version and each item's delta. */
interface SettlementPlan {
  /** What the lease item will record. */
  readonly record: LeaseRecord;
  readonly fingerprint: string | undefined;
  /** An adjust that reports nothing the lease has not had reported. */
  readonly nothingNew: boolean;
  readonly lease: ItemUpdate;
  readonly items: readonly { readonly item: LeasedItem; readonly update: ItemUpdate | ItemCheck }[];
  /** Scopes to read before writing: a refund found no place in what this process remembers. */
  readonly unplaced: readonly ItemKey[];
}

function planSettlement(
  engine: EngineState,
  claims: LeaseClaims,
  record: LeaseRecord | undefined,
  ask: Settlement,
  nowMs: number,
): SettlementPlan {
  const previous = record?.totals ?? claims.usage;
  const reported = record?.reported ?? {};
  const next = nextReport(claims, reported, ask);
  const totals =
    ask.kind === 'cancel' ? zeroed(previous) : withCost({ ...claims.usage, ...next }, claims.price);
  // Each metric is a column of usage history and a field of the lease item: bounded per lease,
  // not only per request (reports naming new metrics each time would grow it without end).
  if (Object.keys(totals).length > MAX_LEASE_METRICS)
    throw new ValidationError(
      'usage',
      `a lease carries at most ${MAX_LEASE_METRICS} metrics in all (its estimate and every report); this would make ${Object.keys(totals).length}`,
    );
  const fingerprint = ask.kind === 'adjust' ? undefined : `${ask.kind}:${canonicalJson(totals)}`;
  const final = ask.kind !== 'adjust';
  const version = (record?.version ?? 0n) + 1n;
  // One transaction: the lease item, each scope's, and what refunds spill onto other shards.
  let room = TRANSACTION_ITEMS - 1 - claims.items.length;
  const later = laterDebts(record);
  const items = claims.items.map((item, i) => {
    const debts = later[i] ?? new Map();
    const delta = deltaUpdates(
      engine,
      item,
      previous,
      totals,
      nowMs,
      claims.acquiredAtMs,
      room,
      debts,
    );
    later[i] = debts;
    room -= delta.spills.updates.length;
    return { item, ...delta };
  });
  const laterNow = laterRecord(later);
  const nextRecord: LeaseRecord = {
    version,
    reported: next,
    totals,
    settled: final,
    ...(fingerprint ? { fingerprint } : {}),
    ...(laterNow ? { later: laterNow } : {}),
  };
  return {
    record: nextRecord,
    fingerprint,
    nothingNew: canonicalJson(next) === canonicalJson(reported),
    lease: leaseUpdate(engine, claims, record, nextRecord),
    items: items.flatMap(({ item, update, spills }) => [
      ...(update ? [{ item, update }] : []),
      ...spills.updates.map((spill) => ({ item: { ...item, key: spill.key }, update: spill })),
    ]),
    unplaced: items.flatMap(({ spills }) => (spills.unplaced ? [spills.unplaced] : [])),
  };
}

/** One transaction of the lease item and the item deltas (the lease item alone when none). */
function writeSettlement(engine: EngineState, plan: SettlementPlan): Promise<TransactResult> {
  if (plan.items.length > 0)
    return engine.store.transact([plan.lease, ...plan.items.map((u) => u.update)]);
  return engine.store
    .update(plan.lease)
    .then(
      (r): TransactResult =>
        r.ok ? { ok: true } : { ok: false, failures: [{ reason: 'condition', item: r.item }] },
    );
}

/**
 * What a failed settlement teaches: the lease's record in the table (null when its write did
 * not fail on it), the items' states, splits to wait for, and whether it conflicted.
 */
function learn(
  engine: EngineState,
  plan: SettlementPlan,
  failures: readonly TransactFailure[],
): { record: LeaseRecord | undefined | null; splitting: Promise<void>[]; conflict: boolean } {
  let record: LeaseRecord | undefined | null = null;
  let conflict = false;
  const splitting: Promise<void>[] = [];
  for (const [i, failure] of failures.entries()) {
    if (failure.reason === 'conflict') conflict = true;
    if (failure.reason !== 'condition') continue;
    if (i === 0) {
      record = leaseRecordFrom(failure.item);
      continue;
    }
    const item = plan.items[i - 1]?.item;
    const split = item && learnFailed(engine, item.key, failure);
    if (split) splitting.push(split);
  }
  return { record, splitting, conflict };
}

/**
 * Reads the items the lease charged, for an answer to a settlement this process did not see
 * land (its answer was lost, or another process wrote it): its memory of them predates that
 * settlement, and the limits it answers with would say so.
 */
const readItems = (engine: EngineState, claims: LeaseClaims) =>
  engine.readAgain(claims.items.map(({ key }) => key));

/**
 * The answer to an adjust or release: the lease's totals and its limits as this process last
 * saw them, whether or not the lease is settled (`isSettled`: an adjust's answer is not).
 */
function settlementAnswer(
  engine: EngineState,
  leaseId: string,
  claims: LeaseClaims,
  totals: Usage,
  isSettled: boolean,
  nowMs: number,
): SettleResult {
  return {
    leaseId,
    settled: isSettled,
    usage: totals,
    limits: claims.items.flatMap((item) =>
      scopeStatuses(engine, { ...item, key: shardOf(item.key).base }, nowMs),
    ),
  };
}

const has = (usage: Usage, metric: string) => Object.hasOwn(usage, metric);

/**
 * What the lease has had reported after this settlement. An adjust keeps each metric's highest
 * report (running totals only grow); a final release sets the metrics it names exactly. When
 * only input and output tokens are given, `tokens` follows their totals.
 */
function nextReport(claims: LeaseClaims, reported: Usage, ask: Settlement): Usage {
  if (ask.kind === 'cancel') return reported;
  const monotonic = ask.kind === 'adjust';
  const merged = new Map(Object.entries(reported));
  for (const [metric, value] of Object.entries(ask.given)) {
    merged.set(metric, monotonic ? Math.max(amountOf(reported, metric), value) : value);
  }
  const split = has(ask.given, 'input_tokens') || has(ask.given, 'output_tokens');
  if (split && !has(ask.given, 'tokens')) {
    const base = { ...claims.usage, ...Object.fromEntries(merged) };
    const tokens = amountOf(base, 'input_tokens') + amountOf(base, 'output_tokens');
    if (tokens > MAX_AMOUNT) throw new ValidationError('usage.tokens', 'too large');
    merged.set('tokens', monotonic ? Math.max(amountOf(reported, 'tokens'), tokens) : tokens);
  }
  return Object.fromEntries(merged);
}
