/**
 * What one operation may spend before it answers: writes lost to contention (attempts), tries
 * made after waiting on another writer's progress (a split, a conversion: they do not use up
 * attempts, up to a bound), and a deadline, the request's `AbortSignal`. Past the deadline
 * nothing new is written: the operation answers {@link DeadlineExceededError} (503), and a write
 * already sent is left to finish; acquire gives back what it took once its outcome is known.
 */
import { DeadlineExceededError } from '../errors.js';

/** Tries after waiting on others' progress before they count as attempts. */
export const MAX_WAITS = 100;

/** The attempts and the deadline of one operation. */
export class Budget {
  readonly signal: AbortSignal | undefined;
  #attempts: number;
  #waits = MAX_WAITS;

  constructor(attempts: number, signal?: AbortSignal) {
    this.signal = signal;
    this.#attempts = attempts;
  }

  /** Whether the deadline has passed. */
  get expired(): boolean {
    return this.signal?.aborted === true;
  }

  /** After a try lost to another writer: whether another may be made (deadline aside). */
  lost(): boolean {
    return --this.#attempts > 0;
  }

  /** After a try that waited on another writer's progress: another may be made, within bounds. */
  waited(): boolean {
    if (this.#waits > 0) {
      this.#waits--;
      return true;
    }
    return this.lost();
  }

  /**
   * `work`'s result, or {@link DeadlineExceededError} if the deadline passes first. The work is
   * not cancelled: a write in flight may still land, and whoever sent it decides what follows.
   */
  within<T>(work: Promise<T>): Promise<T> {
    return beforeDeadline(work, this.signal);
  }
}

/** `work`'s result, or {@link DeadlineExceededError} once `signal` aborts (the work goes on). */
export function beforeDeadline<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => {}); // its outcome is the sender's to handle
    return Promise.reject(new DeadlineExceededError());
  }
  return new Promise<T>((resolve, reject) => {
    const expire = () => reject(new DeadlineExceededError());
    signal.addEventListener('abort', expire, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', expire);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', expire);
        reject(error);
      },
    );
  });
}

/**
 * `work`'s result, or, when it has none after `waitMs`, `instead()`'s (whichever settles first:
 * `work` is not cancelled). For reads shared between callers: one that hangs holds them no longer
 * than `waitMs`.
 */
export function orAfter<T>(
  work: Promise<T>,
  waitMs: number,
  instead: () => Promise<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => instead().then(resolve, reject), Math.max(0, waitMs));
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
