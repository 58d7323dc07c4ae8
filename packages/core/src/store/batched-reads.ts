/**
 * Reads coalesced: the items asked for in one turn of the event loop (a new container's first
 * reads with its first call's, an acquire's configuration, a sharded scope's shards, a
 * settlement's items) go to DynamoDB in one request, each distinct key once, its answer given to
 * every caller that asked for it. A request for one key is a GetItem (a turn that reads one item
 * sends what it always sent); more go as BatchGetItem, at most {@link MAX_BATCH_KEYS} keys a
 * request. Keys DynamoDB leaves unprocessed (throttled, or past 16 MB of answer) are asked for
 * again after a short backoff until answered. Each request, its repeats and their pauses
 * included, fails once unanswered for `SERVICE_DEFAULTS.storeRequestTimeoutMs`, the bound of
 * every read; a request that fails fails each of its callers (who read again, as after any
 * failed read), but one DynamoDB refuses for what one of its keys is (a key too long, a key the
 * role may not read) is read key by key, so that only that key's callers fail. Each caller gets
 * an item of its own (callers of one key do not share an object).
 */
import { SERVICE_DEFAULTS } from '../defaults.js';
import type { ItemKey, ItemState } from './types.js';

/** The most keys DynamoDB takes in one BatchGetItem. */
export const MAX_BATCH_KEYS = 100;

/** What one BatchGetItem answered: the items it found, and the keys to ask for again. */
export interface BatchAnswer {
  readonly items: readonly { readonly key: ItemKey; readonly state: ItemState }[];
  readonly unprocessed: readonly ItemKey[];
}

/** The two requests reads go as, each given up on when `signal` aborts. */
export interface ReadRequests {
  /** One item (GetItem): undefined when the table holds none. */
  one(key: ItemKey, signal: AbortSignal): Promise<ItemState | undefined>;
  /** Up to {@link MAX_BATCH_KEYS} distinct items (BatchGetItem); an item absent is not in it. */
  many(keys: readonly ItemKey[], signal: AbortSignal): Promise<BatchAnswer>;
  /** Whether a failed request was refused for what its keys are (then each is read alone). */
  refusedForKeys?(error: unknown): boolean;
}

/** One distinct key asked for in this turn: its answer, shared by every caller that asked. */
interface Read {
  readonly key: ItemKey;
  readonly answer: Promise<ItemState | undefined>;
  readonly resolve: (state: ItemState | undefined) => void;
  readonly reject: (error: unknown) => void;
}

const idOf = (key: ItemKey): string => JSON.stringify([key.pk, key.sk]);

function newRead(key: ItemKey): Read {
  let resolve: Read['resolve'] = () => {};
  let reject: Read['reject'] = () => {};
  const answer = new Promise<ItemState | undefined>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { key, answer, resolve, reject };
}

/** The pause before asking for unprocessed keys again: 10, 20, 40… ms up to 200, jittered. */
const backoffMs = (attempt: number): number =>
  Math.min(200, 10 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);

/** Waits `ms`, or fails as an aborted request does when `signal` aborts first. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () => {
      clearTimeout(timer);
      reject(
        Object.assign(new Error('Request aborted', { cause: signal.reason }), {
          name: 'AbortError',
        }),
      );
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    if (signal.aborted) aborted();
    else signal.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * Every `get` of one turn sent together (see the module's comment); `requests` sends them.
 *
 * @example
 * const reads = new BatchedReads({ one: getItem, many: batchGetItem });
 * const [a, b] = await Promise.all([reads.get(keyA), reads.get(keyB)]); // one BatchGetItem
 */
export class BatchedReads {
  readonly #requests: ReadRequests;
  /** This turn's reads, by key; sent when the turn ends. */
  #turn: Map<string, Read> | undefined;

  constructor(requests: ReadRequests) {
    this.#requests = requests;
  }

  /** The item under `key`, read with whatever else this turn reads. */
  get(key: ItemKey): Promise<ItemState | undefined> {
    const turn = this.#turn ?? this.#newTurn();
    const id = idOf(key);
    let read = turn.get(id);
    if (!read) {
      read = newRead(key);
      turn.set(id, read);
    }
    // A copy of its own: items hold strings and bigints only.
    return read.answer.then((state) => (state === undefined ? undefined : { ...state }));
  }

  #newTurn(): Map<string, Read> {
    const turn = new Map<string, Read>();
    this.#turn = turn;
    // After this turn's callbacks and the promise jobs they queued: every read asked for by then
    // goes in this turn's requests.
    setImmediate(() => {
      this.#turn = undefined;
      this.#send(turn);
    });
    return turn;
  }

  #send(turn: Map<string, Read>): void {
    const reads = [...turn.values()];
    for (let start = 0; start < reads.length; start += MAX_BATCH_KEYS) {
      const group = reads.slice(start, start + MAX_BATCH_KEYS);
      const signal = AbortSignal.timeout(SERVICE_DEFAULTS.storeRequestTimeoutMs);
      const [only] = group;
      if (group.length === 1 && only) {
        this.#requests.one(only.key, signal).then(only.resolve, only.reject);
        continue;
      }
      this.#together(
        group.map((read) => read.key),
        signal,
      ).then(
        (found) => {
          for (const read of group) read.resolve(found.get(idOf(read.key)));
        },
        (error: unknown) => {
          if (!this.#requests.refusedForKeys?.(error) || signal.aborted) {
            for (const read of group) read.reject(error);
            return;
          }
          for (const read of group)
            this.#requests.one(read.key, signal).then(read.resolve, read.reject);
        },
      );
    }
  }

  /** The items found under `keys`, by key id, their unprocessed keys asked for until answered. */
  async #together(keys: readonly ItemKey[], signal: AbortSignal): Promise<Map<string, ItemState>> {
    const found = new Map<string, ItemState>();
    let left = keys;
    for (let attempt = 0; left.length > 0; attempt += 1) {
      if (attempt > 0) await pause(backoffMs(attempt), signal);
      const answer = await this.#requests.many(left, signal);
      for (const { key, state } of answer.items) found.set(idOf(key), state);
      left = answer.unprocessed;
    }
    return found;
  }
}
