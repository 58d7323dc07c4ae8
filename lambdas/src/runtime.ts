/**
 * What a container creates once and every request reuses: the DynamoDB client, the engine
 * (whose memory of recent item states is what keeps the hot path to one write) and the logger.
 * An in-process client makes a runtime of its own from its options and runs the handlers in it
 * ({@link withRuntime}); the environment variables are then not read.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBStore, storeRequestHandler, throttlingRetries } from '@sluice/core';
import { CachedConfigSource, DenialBuffer, EngineState } from '@sluice/core/internal';
import { type Environment, loadEnvironment, serviceName } from './environment.js';

/** Per-container singletons. */
export interface Runtime {
  readonly env: Environment;
  /** The DynamoDB client every store of this container shares. */
  readonly client: DynamoDBClient;
  readonly store: DynamoDBStore;
  /** The engine's per-container state; handlers run one operation on it. */
  readonly engine: EngineState;
  /** Stored configuration as acquire reads it: cached for `configCacheMs`. */
  readonly policies: CachedConfigSource;
  /** Refusals gathered for usage history, written every `denialFlushMs`. */
  readonly denials: DenialBuffer;
}

const service = serviceName();

/**
 * Structured logs: request id, route, entity, resource, decision. Never credentials or bodies.
 * Acquire's decision lines are also its metrics (the construct's metric filters count them).
 */
export const logger = new Logger({ serviceName: service });

let runtime: Runtime | undefined;

/**
 * The runtime of the calls running inside {@link withRuntime}: an in-process client's own, made
 * from its options. Outside one (every call in Lambda and in the local server) the container's.
 */
const scoped = new AsyncLocalStorage<Runtime>();

/** The runtime of this call: the one it runs {@link withRuntime} in, else the container's. */
export function getRuntime(): Runtime {
  const own = scoped.getStore();
  if (own) return own;
  runtime ??= createRuntime(loadEnvironment());
  return runtime;
}

/** Runs `fn` (and all it starts) with `own` as its {@link getRuntime}. */
export const withRuntime = <T>(own: Runtime, fn: () => T): T => scoped.run(own, fn);

/** Whether the handlers run in another function's process (in-process.ts), not as a function. */
let inProcessOnly = false;

/** Says the handlers run in process: their modules then read nothing at load (see in-process-mark.ts). */
export function serveInProcess(): void {
  inProcessOnly = true;
}

/** The DynamoDB client the stores of a runtime share, for `env`'s DynamoDB. */
export function dynamodbClient(
  env: Pick<Environment, 'dynamodbEndpoint'>,
  config: DynamoDBClientConfig = {},
): DynamoDBClient {
  return new DynamoDBClient({
    retryStrategy: throttlingRetries(),
    requestHandler: storeRequestHandler(),
    ...(env.dynamodbEndpoint ? { endpoint: env.dynamodbEndpoint } : {}),
    ...config,
  });
}

/** A runtime for `env`: what a container makes once, or an in-process client for itself. */
export function createRuntime(env: Environment, client = dynamodbClient(env)): Runtime {
  const store = new DynamoDBStore({ client, tableName: env.tableName });
  const engine = new EngineState({
    store,
    shardGrowWritesPerSecond: env.shardGrowWritesPerSecond,
    // A configuration change reaches every container within its cache time.
    definitionAdoptMs: 2 * env.configCacheMs,
    onBackgroundError: (error) =>
      // A give-back: the refused request stays charged; a split: its next writer completes it;
      // a budget recorded by a refused call: the next refused call records it.
      logger.error('a write made after its call was answered failed', { error }),
    onSigningKeysRestored: (keyIds) =>
      logger.error('signing keys were missing from the table; wrote back those known here', {
        keyIds,
      }),
  });
  const policies = new CachedConfigSource({ store, ttlMs: env.configCacheMs });
  const denials = new DenialBuffer({ store, flushMs: env.denialFlushMs });
  return { env, client, store, engine, policies, denials };
}

/**
 * Starts, in a new Lambda container's init, the reads its first call makes whoever calls, so
 * that call waits on fewer round trips: the lease signing keys, and for acquire the settings
 * and the `default` plan. They are asked for together, so the store sends them as one request
 * (a BatchGetItem), and with the first call's own reads when that call comes in the same turn
 * of the event loop as the end of the import (as the bench runs it): then a cold acquire sends
 * one BatchGetItem, then its write. Nothing waits on them, and they write nothing; one that
 * fails is read again when needed. Only in Lambda (`AWS_LAMBDA_FUNCTION_NAME` set), where a
 * container is one function with its own role: a process that loads every handler (the local
 * server) reads nothing here. A container whose environment is incomplete reads nothing either
 * (its first call says why).
 */
export function prefetch(forCall: 'acquire' | 'settle'): void {
  if (inProcessOnly || !process.env.AWS_LAMBDA_FUNCTION_NAME) return;
  let runtime: Runtime;
  try {
    runtime = getRuntime();
  } catch {
    return;
  }
  warm(runtime, forCall);
}

/**
 * Starts the reads a runtime's first call of `forCall` makes whoever calls (see
 * {@link prefetch}); nothing waits on them.
 */
export function warm(runtime: Runtime, forCall: 'acquire' | 'settle'): void {
  runtime.engine.keys.warm();
  if (forCall !== 'acquire') return;
  runtime.policies.settings().catch(() => {});
  runtime.policies.plan('default').catch(() => {});
}
