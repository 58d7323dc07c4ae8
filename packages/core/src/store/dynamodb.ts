/**
 * The DynamoDB store: renders the engine's updates as UpdateItem / TransactWriteItems
 * expressions, asks for the old item whenever a condition fails (so a denial or a wrong branch
 * guess costs no extra read), reads the items asked for in one turn together (batched-reads.ts),
 * and translates AWS SDK exceptions into Sluice errors.
 */
import {
  type AttributeValue,
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { StandardRetryStrategy } from '@smithy/core/retry';
import type { RetryStrategyV2, StandardRetryToken } from '@smithy/types';
import { SERVICE_DEFAULTS } from '../defaults.js';
import { SluiceError, StoreUnavailableError, WriteRejectedError } from '../errors.js';
import { own } from '../names.js';
import { type BatchAnswer, BatchedReads } from './batched-reads.js';
import { TABLE_SCHEMA } from './schema.js';
import type {
  Assignment,
  Condition,
  ItemKey,
  ItemState,
  ItemUpdate,
  ItemWrite,
  Store,
  TransactFailure,
  TransactResult,
  UpdateResult,
  Value,
} from './types.js';

/** A DynamoDB client (created once per process) and the table's name. */
export interface DynamoDBStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
}

/** Placeholders for one expression: `#n0`, `:v0`, … */
class Expression {
  readonly #names = new Map<string, string>();
  readonly #values = new Map<string, AttributeValue>();
  readonly #nameIds = new Map<string, string>();

  /** `ExpressionAttributeNames`. */
  get names(): Record<string, string> {
    return Object.fromEntries(this.#names);
  }

  /** `ExpressionAttributeValues`. */
  get values(): Record<string, AttributeValue> {
    return Object.fromEntries(this.#values);
  }

  get hasValues(): boolean {
    return this.#values.size > 0;
  }

  name(attr: string): string {
    let id = this.#nameIds.get(attr);
    if (!id) {
      id = `#n${this.#nameIds.size}`;
      this.#nameIds.set(attr, id);
      this.#names.set(id, attr);
    }
    return id;
  }

  value(v: Value): string {
    const id = `:v${this.#values.size}`;
    this.#values.set(id, typeof v === 'bigint' ? { N: v.toString() } : { S: v });
    return id;
  }

  assignment(a: Assignment): string {
    const n = this.name(a.attr);
    if ('value' in a) return `${n} = ${this.value(a.value)}`;
    if ('add' in a) return `${n} = ${n} + ${this.value(a.add)}`;
    if ('ifAbsent' in a) return `${n} = if_not_exists(${n}, ${this.value(a.ifAbsent)})`;
    if ('copyOf' in a)
      return `${n} = if_not_exists(${this.name(a.copyOf)}, ${this.value(a.orElse)})`;
    return `${n} = if_not_exists(${n}, ${this.value(a.base)}) + ${this.value(a.addToExisting)}`;
  }

  /**
   * A condition as DynamoDB takes it: it refuses redundant parentheses (`((a OR b))`), so a group
   * of one is its member, a group within a group of its kind joins it, and only a group within
   * another is parenthesized. An empty `and` holds always, an empty `or` never.
   */
  condition(c: Condition, nested = false): string {
    if ('absent' in c) return `attribute_not_exists(${this.name(c.absent)})`;
    if ('exists' in c) return `attribute_exists(${this.name(c.exists)})`;
    if ('and' in c || 'or' in c) {
      const and = 'and' in c;
      const parts = members(c, and);
      if (parts.length === 0) return this.condition(and ? ALWAYS : NEVER, nested);
      if (parts.length === 1) return this.condition(parts[0] as Condition, nested);
      const text = parts.map((p) => this.condition(p, true)).join(and ? ' AND ' : ' OR ');
      return nested ? `(${text})` : text;
    }
    return `${this.name(c.attr)} ${c.op} ${this.value(c.value)}`;
  }
}

/** The members of an `and` (or an `or`), those of groups of the same kind within it included. */
function members(c: Condition, and: boolean): Condition[] {
  const list = and ? ('and' in c ? c.and : []) : 'or' in c ? c.or : [];
  return list.flatMap((m) => ((and ? 'and' in m : 'or' in m) ? members(m, and) : [m]));
}

const ALWAYS: Condition = {
  or: [{ exists: TABLE_SCHEMA.partitionKey }, { absent: TABLE_SCHEMA.partitionKey }],
};
const NEVER: Condition = {
  and: [{ exists: TABLE_SCHEMA.partitionKey }, { absent: TABLE_SCHEMA.partitionKey }],
};

export function marshalKey(key: ItemKey): Record<string, AttributeValue> {
  return { [TABLE_SCHEMA.partitionKey]: { S: key.pk }, [TABLE_SCHEMA.sortKey]: { S: key.sk } };
}

/** Numbers become exact bigints (we only ever store integers); strings stay strings. */
export function unmarshal(item: Record<string, AttributeValue> | undefined): ItemState | undefined {
  if (!item) return undefined;
  return Object.fromEntries(
    Object.entries(item).flatMap(([attr, value]): [string, bigint | string][] => {
      if (value.S !== undefined) return [[attr, value.S]];
      if (value.N !== undefined && /^-?\d+$/.test(value.N)) return [[attr, BigInt(value.N)]];
      return [];
    }),
  );
}

function render(tableName: string, update: ItemUpdate) {
  const expr = new Expression();
  const remove = update.remove?.length
    ? ` REMOVE ${update.remove.map((attr) => expr.name(attr)).join(', ')}`
    : '';
  const set = update.set.length
    ? `SET ${update.set.map((a) => expr.assignment(a)).join(', ')}`
    : '';
  const updateExpression = `${set}${remove}`.trim();
  const conditionExpression = update.condition ? expr.condition(update.condition) : undefined;
  // DynamoDB refuses an empty expression and empty placeholder maps: each is left out when empty
  // (an update with no action creates the item, or checks its condition, as it stands).
  const names = expr.names;
  return {
    TableName: tableName,
    Key: marshalKey(update.key),
    ...(updateExpression ? { UpdateExpression: updateExpression } : {}),
    ...(conditionExpression ? { ConditionExpression: conditionExpression } : {}),
    ...(Object.keys(names).length ? { ExpressionAttributeNames: names } : {}),
    ...(expr.hasValues ? { ExpressionAttributeValues: expr.values } : {}),
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

function renderCheck(tableName: string, key: ItemKey, condition: Condition) {
  const expr = new Expression();
  const conditionExpression = expr.condition(condition);
  return {
    TableName: tableName,
    Key: marshalKey(key),
    ConditionExpression: conditionExpression,
    ExpressionAttributeNames: expr.names,
    ...(expr.hasValues ? { ExpressionAttributeValues: expr.values } : {}),
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

function renderDelete(tableName: string, key: ItemKey, condition: Condition | undefined) {
  const expr = new Expression();
  const conditionExpression = condition ? expr.condition(condition) : undefined;
  return {
    TableName: tableName,
    Key: marshalKey(key),
    ...(conditionExpression
      ? {
          ConditionExpression: conditionExpression,
          ExpressionAttributeNames: expr.names,
          ...(expr.hasValues ? { ExpressionAttributeValues: expr.values } : {}),
        }
      : {}),
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

/** Throttling, network and service errors → unavailable; anything else is our bug. */
export function translate(error: unknown): SluiceError {
  if (error instanceof SluiceError) return error;
  const name = error instanceof Error ? error.name : 'unknown';
  const ours = ['ValidationException', 'SerializationException'];
  if (ours.includes(name))
    return new SluiceError('internal', `DynamoDB rejected a request: ${name}`, { cause: error });
  const code = (error as { code?: unknown } | undefined)?.code;
  return new StoreUnavailableError(`DynamoDB unavailable: ${name}`, {
    cause: error,
    notApplied: THROTTLING.includes(name) || (typeof code === 'string' && NOT_SENT.includes(code)),
  });
}

/** Refusals DynamoDB makes before applying anything: safe to send again. */
const THROTTLING = [
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
];

/** Network errors that mean the request never reached DynamoDB. */
const NOT_SENT = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN'];

/**
 * The retry strategy the engine's DynamoDB client needs: the AWS SDK's standard one, for
 * throttling only. DynamoDB applied nothing it throttled; after any other failure (an answer
 * lost, a server error) a write may have been applied, and sent again it would be charged
 * twice. The engine decides about those itself (engine/tagged-writes.ts, engine/give-back.ts).
 *
 * @example
 * const client = new DynamoDBClient({ retryStrategy: throttlingRetries() });
 */
export function throttlingRetries(maxAttempts = 3): RetryStrategyV2 {
  const standard = new StandardRetryStrategy(maxAttempts);
  return {
    acquireInitialRetryToken: (scope) => standard.acquireInitialRetryToken(scope),
    refreshRetryTokenForRetry: (token, info) =>
      info.errorType === 'THROTTLING'
        ? standard.refreshRetryTokenForRetry(token as StandardRetryToken, info)
        : Promise.reject(info.error),
    recordSuccess: (token) => standard.recordSuccess(token as StandardRetryToken),
  };
}

/**
 * The HTTP settings the engine's DynamoDB client needs beside {@link throttlingRetries}: a
 * connection that cannot be opened fails after `SERVICE_DEFAULTS.storeConnectionTimeoutMs`
 * (nothing was sent). Reads left unanswered fail after `SERVICE_DEFAULTS.storeRequestTimeoutMs`
 * ({@link DynamoDBStore} bounds each one), not to hold their call and every call that shares
 * them. A write is never given up on by the client: one abandoned while DynamoDB holds it (a
 * paused or overloaded server) may still apply later, after the engine concluded from the item
 * that it had not; the engine bounds the call by its deadline instead, and settles the write
 * once its answer comes.
 *
 * @example
 * const client = new DynamoDBClient({
 *   retryStrategy: throttlingRetries(),
 *   requestHandler: storeRequestHandler(),
 * });
 */
export function storeRequestHandler() {
  return { connectionTimeout: SERVICE_DEFAULTS.storeConnectionTimeoutMs };
}

/** What each read is sent with: it fails once unanswered for `storeRequestTimeoutMs`. */
export const readOptions = () => ({
  abortSignal: AbortSignal.timeout(SERVICE_DEFAULTS.storeRequestTimeoutMs),
});

/**
 * What the engine needs, on a DynamoDB table with the {@link TABLE_SCHEMA} keys. The admin side
 * adds listings: {@link DynamoDBAdminStore} (its own module, so handlers that never list leave
 * it out of their bundles).
 *
 * @example
 * const store = new DynamoDBStore({ client: new DynamoDBClient({}), tableName: 'sluice' });
 */
export class DynamoDBStore implements Store {
  protected readonly client: DynamoDBClient;
  protected readonly tableName: string;
  /**
   * The reads of each turn of the event loop, sent together. Not a `#` field: `get` is called on
   * objects that delegate to a store (`Object.create(store)`, a `Proxy`), as `update` and
   * `transact` are.
   */
  private readonly reads: BatchedReads;

  constructor(options: DynamoDBStoreOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.reads = new BatchedReads({
      one: (key, signal) => this.#getItem(key, signal),
      many: (keys, signal) => this.#batchGetItem(keys, signal),
      // A key DynamoDB will not take, or one the role may not read, refuses the whole batch.
      refusedForKeys: (error) =>
        error instanceof Error &&
        (error.name === 'ValidationException' || error.name === 'AccessDeniedException'),
    });
  }

  async update(update: ItemUpdate): Promise<UpdateResult> {
    try {
      const out = await this.client.send(
        new UpdateItemCommand({ ...render(this.tableName, update), ReturnValues: 'ALL_NEW' }),
      );
      return { ok: true, item: unmarshal(out.Attributes) ?? {} };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        return { ok: false, item: unmarshal(error.Item) };
      throw translate(error);
    }
  }

  async transact(
    updates: readonly ItemWrite[],
    options: { readonly token?: string } = {},
  ): Promise<TransactResult> {
    try {
      await this.client.send(
        new TransactWriteItemsCommand({
          ...(options.token ? { ClientRequestToken: options.token } : {}),
          TransactItems: updates.map((write) => {
            if ('check' in write)
              return { ConditionCheck: renderCheck(this.tableName, write.key, write.check) };
            if ('set' in write) {
              // A transaction's update needs an action: one with none only checks its condition.
              const { UpdateExpression, ...rest } = render(this.tableName, write);
              if (UpdateExpression) return { Update: { ...rest, UpdateExpression } };
              return {
                ConditionCheck: renderCheck(this.tableName, write.key, write.condition ?? ALWAYS),
              };
            }
            return { Delete: renderDelete(this.tableName, write.key, write.condition) };
          }),
        }),
      );
      return { ok: true };
    } catch (error) {
      if (error instanceof TransactionCanceledException) {
        const reasons = error.CancellationReasons ?? [];
        const failures = updates.map((_, i): TransactFailure => {
          const reason = reasons[i];
          if (reason?.Code === 'ConditionalCheckFailed')
            return { reason: 'condition', item: unmarshal(reason.Item) };
          if (reason?.Code === 'TransactionConflict') return { reason: 'conflict' };
          return { reason: 'none' };
        });
        // A write DynamoDB rejects for what it holds (an item grown past its size) is refused
        // again however often it is sent: ours to fix, not a failure that passes.
        const rejected = reasons.flatMap((r, i) => (r?.Code === 'ValidationError' ? [i] : []));
        if (rejected.length > 0) throw new WriteRejectedError(rejected, { cause: error });
        if (failures.some((f) => f.reason !== 'none')) return { ok: false, failures };
      }
      throw translate(error);
    }
  }

  /**
   * The item under `key` (strongly consistent), read with the other items asked for in this turn
   * of the event loop: one GetItem when it is the only one, else one BatchGetItem (see
   * store/batched-reads.ts). A role that reads through this store needs `dynamodb:BatchGetItem`
   * beside `dynamodb:GetItem`.
   */
  async get(key: ItemKey): Promise<ItemState | undefined> {
    try {
      return await this.reads.get(key);
    } catch (error) {
      throw translate(error);
    }
  }

  async #getItem(key: ItemKey, signal: AbortSignal): Promise<ItemState | undefined> {
    const out = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: marshalKey(key), ConsistentRead: true }),
      { abortSignal: signal },
    );
    return unmarshal(out.Item);
  }

  async #batchGetItem(keys: readonly ItemKey[], signal: AbortSignal): Promise<BatchAnswer> {
    const out = await this.client.send(
      new BatchGetItemCommand({
        RequestItems: { [this.tableName]: { Keys: keys.map(marshalKey), ConsistentRead: true } },
      }),
      { abortSignal: signal },
    );
    return {
      items: (own(out.Responses, this.tableName) ?? []).map((item) => ({
        key: keyOf(item),
        state: unmarshal(item) ?? {},
      })),
      unprocessed: (own(out.UnprocessedKeys, this.tableName)?.Keys ?? []).map(keyOf),
    };
  }
}

/** The key of an item (or of a key) DynamoDB answered. */
const keyOf = (item: Record<string, AttributeValue>): ItemKey => ({
  pk: item[TABLE_SCHEMA.partitionKey]?.S ?? '',
  sk: item[TABLE_SCHEMA.sortKey]?.S ?? '',
});
