/**
 * Reading a table's stream once, whole: what tests and the benchmark compare usage history with.
 */

import type { ItemChange } from '@sluice/core/internal';
import { type StreamReaderOptions, startStreamReader } from './stream.js';

/** Every change the table's stream holds now, in stream order (for tests and the benchmark). */
export async function readStream(
  options: Omit<StreamReaderOptions, 'apply' | 'onError'>,
): Promise<ItemChange[]> {
  const changes: ItemChange[] = [];
  let failure: unknown;
  const reader = await startStreamReader({
    ...options,
    apply: async (batch) => {
      changes.push(...batch);
    },
    onError: (error) => {
      failure = error;
    },
    idleMs: options.idleMs ?? 20,
  });
  await reader.drain();
  await reader.stop();
  if (failure !== undefined) throw failure;
  return changes;
}
