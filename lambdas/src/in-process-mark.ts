/**
 * Imported first by in-process.ts, before the handlers: a process that runs them in process (the
 * caller's own function) is not their container, so they start no container reads at load
 * (`prefetch`) from its environment, which may name another table or none.
 */
import { serveInProcess } from './runtime.js';

serveInProcess();
