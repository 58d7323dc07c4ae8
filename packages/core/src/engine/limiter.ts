/**
 * The engine behind one object: acquire, adjust, release and available over one or more scope
 * items, sharing one process's memory ({@link EngineState}). Each operation also stands alone
 * (acquire.ts, settle.ts, available.ts), so a Lambda handler bundles only the one it runs.
 */

import type { Price } from '../catalog/price.js';
import { acquire } from './acquire.js';
import { available } from './available.js';
import { combineWrites } from './combining.js';
import type { Usage } from './limits.js';
import { adjust, release, type SettleOptions } from './settle.js';
import { EngineState } from './state.js';
import type {
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  LimiterOptions,
  ScopeCheck,
  SettleResult,
} from './types.js';

/**
 * Decides whether calls may go ahead, against limits stored as DynamoDB items.
 *
 * @example
 * const limiter = new Limiter({ store: new DynamoDBStore({ client, tableName: 'sluice' }) });
 * const limits = parseLimits([{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }]);
 * const result = await limiter.acquire({
 *   checks: [{ scope: 'entity', key: itemKeys.entityBucket('key-123', 'gpt-4o'), limits }],
 *   usage: { input_tokens: 1_500, output_tokens: 500 },
 * });
 * if (result.allowed) {
 *   // ... call the model, then report what it really used:
 *   await limiter.release(result.leaseId, { input_tokens: 1_480, output_tokens: 870 });
 * }
 */
export class Limiter {
  /**
   * The process's memory the operations share. Not for users (its type is internal): for
   * Sluice's own tests, which reach past the operations.
   */
  readonly engine: EngineState;

  constructor(options: LimiterOptions) {
    this.engine = new EngineState({ combiner: combineWrites(), ...options });
  }

  /** Asks to take `usage` from every limit of every check, atomically per decision. */
  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return acquire(this.engine, request);
  }

  /**
   * Reports the lease's actual usage so far: running totals, not increments. Each metric only
   * grows: a value below one already reported for it (a late or reordered copy) changes nothing.
   * Metrics never reported keep the estimate. May be called repeatedly while a stream runs.
   */
  adjust(leaseId: string, usage: Usage, options?: SettleOptions): Promise<SettleResult> {
    return adjust(this.engine, leaseId, usage, options);
  }

  /**
   * Settles a lease with its final totals (exactly as given; metrics left out keep the last
   * reported value, else the estimate), or, without `usage`, cancels it: what it took is given
   * back as far as it has not refilled (the call failed and cost nothing).
   */
  release(leaseId: string, usage?: Usage, options?: SettleOptions): Promise<SettleResult> {
    return release(this.engine, leaseId, usage, options);
  }

  /** What remains of every limit, and when `usage` would fit; consumes nothing. */
  available(request: {
    checks: readonly ScopeCheck[];
    usage?: Usage;
    price?: Price | undefined;
    signal?: AbortSignal | undefined;
  }): Promise<AvailableResult> {
    return available(this.engine, request);
  }

  /**
   * Forgets what this process last saw of every item, so nothing is denied from memory: for a
   * reset served by the same process.
   */
  forget(): void {
    this.engine.forget();
  }

  /** Reads the signing keys again now (a rotation made by this process). */
  async reloadSigningKeys(): Promise<void> {
    await this.engine.keys.reload();
  }
}
