/**
 * Write combining, for a process that serves many calls at once (a server that embeds the
 * engine, `npm start`): concurrent acquires on one item go to the store together, as one
 * conditional update of their summed usage, instead of one write each queuing on the item. The
 * first call on an item writes at once; the calls that arrive while a write of this process is
 * in flight on it wait for that write, then go together in the next one (group commit). A burst
 * of 32 callers on one key costs 2 writes instead of 32.
 *
 * The combined write is the one a single call of the summed usage would send: the same idle and
 * busy branches and conditions, so it admits all of its calls or none, exactly as they would have
 * been admitted one after another. Its calls are the longest run, in arrival order, that the
 * last state seen admits; the rest plan again from the state the write returns (a refusal it
 * proves, or another write). A call that carries something of its own (a usage event, a shard's
 * write counter, a reservation, a shadow limit, a conversion) is not combined: it waits for the
 * writes ahead of it when they leave it no room, and otherwise writes beside them (increments of
 * a busy bucket commute).
 *
 * A Lambda container serves one request at a time and never has two writes on one item: it
 * writes each as it comes and does without this module, which stays out of its bundle.
 */

import type { ItemKey, ItemState, ItemUpdate, UpdateResult } from '../store/types.js';
import { applyLocally } from './items.js';
import { sumUsage, type Usage } from './limits.js';
import { type EngineState, keyOf } from './state.js';
import { tagged } from './tagged-writes.js';

/** What a plan of an item's write comes to (acquire.ts's step of one item). */
export type Planned =
  | { readonly kind: 'write'; readonly update: ItemUpdate }
  | { readonly kind: 'deny' | 'none' };

/** One acquire's write to one item, as acquire hands it to a {@link Combiner}. */
export interface Write {
  readonly key: ItemKey;
  /** The write as planned for this call alone. */
  readonly update: ItemUpdate;
  readonly usage: Usage;
  /** When the call was decided (its clock reading). */
  readonly nowMs: number;
  /** Plans the item's write for `usage` (this call's, or calls' summed) from `state` at `atMs`. */
  readonly plan: (usage: Usage, state: ItemState | undefined, atMs: number) => Planned;
  /**
   * What calls must share to be combined (their limits and priority), computed only when
   * another write is in flight; absent when this call cannot be combined with others.
   */
  readonly like?: () => string;
  /** The call's deadline: once it has passed, the call is written in no group. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What became of a {@link Write}: the store's answer, and `atMs`, the clock reading the write
 * was planned at when it was combined; or `again` when nothing was written for the call and it
 * should plan again from the last state this process has seen of the item.
 */
export type Written =
  | (UpdateResult & { readonly atMs?: number; readonly again?: undefined })
  | { readonly again: true };

/** Sends acquire's writes; one per engine. */
export type Combiner = (engine: EngineState, write: Write) => Promise<Written>;

interface InFlight {
  readonly set: ItemUpdate['set'];
  readonly done: Promise<void>;
}

interface Member {
  readonly write: Write;
  settle(written: Written): void;
  fail(error: unknown): void;
}

interface Group {
  readonly like: string;
  readonly members: Member[];
}

const noop = () => {};

/**
 * A {@link Combiner} for one engine. {@link Limiter} uses one unless told otherwise.
 *
 * @example
 * const engine = new EngineState({ store, combiner: combineWrites() });
 */
export function combineWrites(): Combiner {
  const combiner = new WriteCombiner();
  return (engine, write) => combiner.write(engine, write);
}

/** The writes one process has in flight and the calls waiting behind them, per item. */
class WriteCombiner {
  /** This process's writes in flight, per item. */
  readonly #inFlight = new Map<string, Set<InFlight>>();
  /** Calls waiting to be written together, per item: at most one group each. */
  readonly #groups = new Map<string, Group>();

  async write(engine: EngineState, write: Write): Promise<Written> {
    const id = keyOf(write.key);
    const ahead = this.#inFlight.get(id);
    const group = this.#groups.get(id);
    if (!ahead && !group) return this.#send(engine, id, write.key, write.update);
    const like = write.like?.();
    if (like !== undefined && (!group || group.like === like)) {
      return new Promise<Written>((settle, fail) => {
        const member = { write, settle, fail };
        if (group) group.members.push(member);
        else {
          const formed = { like, members: [member] };
          this.#groups.set(id, formed);
          void this.#flush(engine, id, formed);
        }
      });
    }
    return ahead
      ? this.#behind(engine, id, write, ahead)
      : this.#send(engine, id, write.key, write.update);
  }

  /**
   * A call that cannot join a group, behind this process's writes in flight on its item: when
   * they leave it no room, it waits for them and decides from what they find, rather than send
   * a write bound to fail (a herd). With room behind them, on an item never seen, it writes as
   * they will have left it (a busy bucket's increments commute) rather than guess it idle, as
   * they all did. (Over a known state, memory's guess stands: a projected exact-match step would
   * race.)
   */
  async #behind(
    engine: EngineState,
    id: string,
    write: Write,
    ahead: Set<InFlight>,
  ): Promise<Written> {
    const projected = [...ahead].reduce(
      (state, w) => applyLocally(state, w.set),
      engine.stateOf(write.key) ?? {},
    );
    const behind = write.plan(write.usage, projected, write.nowMs);
    if (behind.kind === 'deny') {
      await ended(ahead);
      return { again: true };
    }
    if (behind.kind === 'write' && engine.stateOf(write.key) === undefined)
      return this.#send(engine, id, write.key, behind.update);
    return this.#send(engine, id, write.key, write.update);
  }

  /** Sends one write, remembering what it returns before the writes behind it go on. */
  #send(engine: EngineState, id: string, key: ItemKey, update: ItemUpdate): Promise<UpdateResult> {
    const sending = tagged(engine, update).then((result) => {
      engine.remember(key, result.item ?? {});
      return result;
    });
    const writes = this.#inFlight.get(id) ?? new Set();
    const entry = { set: update.set, done: sending.then(noop, noop) };
    this.#inFlight.set(id, writes.add(entry));
    return sending.finally(() => {
      writes.delete(entry);
      if (writes.size === 0) this.#inFlight.delete(id);
    });
  }

  /** Writes a group's calls, as many at a time as the item admits. Never rejects. */
  async #flush(engine: EngineState, id: string, group: Group): Promise<void> {
    await ended(this.#inFlight.get(id)); // (a group forms only behind a write in flight)
    this.#groups.delete(id); // calls from now on form the next group, behind this one's writes
    let rest = group.members;
    try {
      for (let attempt = 0; rest.length > 0 && attempt < engine.tuning.maxAttempts; ) {
        // Awaited only when needed: from here to the send nothing else runs, so the plan is made
        // from the latest state this process has seen and no call of it writes meanwhile.
        if (this.#inFlight.has(id)) await ended(this.#inFlight.get(id));
        rest = withoutGone(rest);
        const first = rest[0]?.write;
        if (!first) break;
        const atMs = engine.clock();
        const run = longestRun(engine, first, rest, atMs);
        if (!run) break;
        const result = await this.#send(engine, id, first.key, run.update);
        if (result.ok) {
          for (const member of rest.slice(0, run.count)) member.settle({ ...result, atMs });
          rest = rest.slice(run.count);
        } else attempt++; // another process wrote the item: plan again from what it returned
      }
    } catch (error) {
      for (const member of rest) member.fail(error);
      return;
    }
    for (const member of rest) member.settle({ again: true });
  }
}

/**
 * Resolves once the writes this process has in flight on the item now have ended (not those
 * sent later: a steady stream of them must not hold a group back for ever).
 */
const ended = (ahead: Set<InFlight> | undefined) =>
  Promise.all([...(ahead ?? [])].map((write) => write.done));

/**
 * The members whose callers still wait: one whose deadline has passed is written in no group (it
 * would take a place from those waiting beside it until it was given back) and is answered that
 * nothing was written for it (its call has answered already: nothing is planned for it again).
 */
function withoutGone(members: readonly Member[]): Member[] {
  const waiting: Member[] = [];
  for (const member of members) {
    if (member.write.signal?.aborted) member.settle({ again: true });
    else waiting.push(member);
  }
  return waiting;
}

/**
 * The longest run of a group's calls, in arrival order, that the last state seen admits one
 * after another, and the one write of their summed usage that takes them together.
 */
function longestRun(
  engine: EngineState,
  first: Write,
  members: readonly Member[],
  atMs: number,
): { readonly count: number; readonly update: ItemUpdate } | undefined {
  // The run is projected from the last state seen only while it may refuse from it: from an
  // older one (a write of this process failed with an error, teaching nothing), as from none, the
  // run is what an idle item admits, and the write's condition decides.
  const state = engine.recent(first.key, atMs) ? engine.stateOf(first.key) : undefined;
  let projected = state;
  let count = 0;
  let total: Usage = {};
  for (const member of members) {
    const step = first.plan(member.write.usage, projected, atMs);
    if (step.kind !== 'write') break;
    projected = applyLocally(projected ?? {}, step.update.set);
    total = sumUsage(total, member.write.usage);
    count++;
  }
  const step = count > 0 ? first.plan(total, state, atMs) : undefined;
  return step?.kind === 'write' ? { count, update: step.update } : undefined;
}
