/**
 * Every default of Sluice, in one place: the engine's tuning, the service around it (the Lambda
 * environment, the construct, the admin API) and the bounds of request fields. Whatever else
 * states a default (the construct's props, the zod schemas, the docs) reads it from here.
 */
export const ENGINE_DEFAULTS = {
  /**
   * How long a lease may be settled after acquire. An unsettled lease keeps its estimate.
   * @default 3_600_000 (one hour: long streaming calls fit)
   */
  leaseTtlMs: 3_600_000,
  /**
   * How old the last state seen of an item may be for the engine to deny from it without a
   * write. Only refunds by other processes can make it too pessimistic.
   * @default 1_000
   */
  cacheDenyMaxAgeMs: 1_000,
  /**
   * Conditional writes per item and decision before giving up on contention (wrong branch
   * guesses); every failed write refreshes the state, so 2 almost always suffice.
   * @default 4
   */
  maxAttempts: 4,
  /**
   * Attempts to settle a lease (transaction conflicts back off between attempts).
   * @default 8
   */
  maxSettleAttempts: 8,
  /**
   * Items whose last state is remembered per process (when full, the least recently written
   * sixteenth is dropped); settled leases, shard counts and write counters are kept as many.
   * @default 10_000
   */
  cacheSize: 10_000,
  /**
   * Longest reservation a caller may ask to wait for.
   * @default 600_000
   */
  maxWaitMsCeiling: 600_000,
  /**
   * Extra life of a bucket item beyond the time its state matters, before TTL may delete it.
   * @default 86_400 (one day)
   */
  ttlSlackSeconds: 86_400,
  /**
   * How often a process reads the lease signing keys again (in the background), so a rotation
   * reaches every process within this time.
   * @default 60_000
   */
  signingKeyRefreshMs: 60_000,
  /**
   * Consuming writes per second to one shard at which a scope that may grow more shards
   * (`max_shards`) doubles them: a partition takes about 1,000 WCU/s, and the scope's
   * settlements (2 WCU an item each) come on top: a call with one adjust writes its scope 5 WCU,
   * so 100 calls/s keep a shard at half a partition (see `npm run capacity`).
   * @default 100
   */
  shardGrowWritesPerSecond: 100,
  /**
   * How long an item may stay frozen for a split before any process completes the split itself
   * (its splitter stopped).
   * @default 1_000
   */
  shardFreezeStaleMs: 1_000,
  /**
   * After a write converts a bucket to a newer stored definition, how long processes still
   * holding an older one adopt it rather than convert it back: at least the time a configuration
   * change takes to reach every process (the service sets twice its configuration cache time).
   * @default 60_000
   */
  definitionAdoptMs: 60_000,
} as const;

/**
 * How long a signing key rotated out keeps verifying: every lease it signed expires within the
 * lease life, and processes that have not yet read the rotation keep signing with it for up to
 * one refresh (two, to be safe).
 */
export const signingKeyRetainMs = (
  tuning: Pick<EngineTuning, 'leaseTtlMs' | 'signingKeyRefreshMs'> = ENGINE_DEFAULTS,
): number => tuning.leaseTtlMs + 2 * tuning.signingKeyRefreshMs;

/** The engine's tuning; every one optional in {@link LimiterOptions}, defaults in {@link ENGINE_DEFAULTS}. */
export type EngineTuning = { -readonly [K in keyof typeof ENGINE_DEFAULTS]: number };

/** Defaults of the service around the engine. */
export const SERVICE_DEFAULTS = {
  /** Service name in logs and metrics. */
  serviceName: 'sluice',
  /**
   * How long a process reuses stored configuration it has read: a change takes effect
   * everywhere within this time.
   */
  configCacheMs: 30_000,
  /** How long admin audit entries are kept (DynamoDB TTL). */
  auditRetentionDays: 90,
  /** How long usage history rows are kept after their period ends (DynamoDB TTL). */
  usageRetentionDays: 400,
  /**
   * How long a process gathers refusals before writing them to usage history: at most one write
   * per entity and resource in this time, one more when a quarter hour turns (refusals a process
   * had not yet written when it stopped are lost).
   */
  denialFlushMs: 5_000,
  /**
   * How far behind the usage aggregator may count (the age of the oldest record of the last
   * batch it counted) before health reports usage history `behind`.
   */
  usageBehindMs: 60_000,
  /** Entries of a top-entities answer, unless `?limit=` asks (at most `maxPageSize`). */
  topSize: 10,
  /** Entries per page of an admin listing, unless `?limit=` asks (at most `maxPageSize`). */
  pageSize: 100,
  maxPageSize: 1_000,
  /**
   * How long one DynamoDB read may go without an answer before it fails, and how long a
   * connection may take to open: a connection that hangs must not hold a decision, or a read
   * other calls share, until the function's timeout. Writes are not given up on (one abandoned
   * while DynamoDB holds it may still apply later): the caller's deadline bounds them.
   */
  storeRequestTimeoutMs: 5_000,
  storeConnectionTimeoutMs: 2_000,
} as const;

/** A request's `priority`: the share (percent) of each limit it may fill. */
export const PRIORITY = { min: 1, max: 100 } as const;

/** Fallbacks a request or a plan may name for one resource, at most. */
export const MAX_FALLBACKS = 4;
