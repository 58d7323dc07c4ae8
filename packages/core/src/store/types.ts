/**
 * The narrow storage interface the engine depends on: conditional updates of single items, a
 * transaction for settlements, and a read. The engine builds updates in the tiny expression
 * language below; only the DynamoDB adapter renders it (and knows AWS exception names).
 */

/** Primary key of an item. */
export interface ItemKey {
  readonly pk: string;
  readonly sk: string;
}

/** An item's attributes: numbers as exact bigints, strings as strings. */
export type ItemState = Readonly<Record<string, bigint | string>>;

/** A stored scalar: numbers as exact bigints, or strings. */
export type Value = bigint | string;

/**
 * `SET attr = value`, `SET attr = attr + delta`, `SET attr = if_not_exists(attr, base) + delta`,
 * `SET attr = if_not_exists(attr, value)`, or `SET attr = if_not_exists(from, value)`: another
 * attribute's value before the update (every right-hand side reads the item as it was).
 */
export type Assignment =
  | { readonly attr: string; readonly value: Value }
  | { readonly attr: string; readonly add: bigint }
  | { readonly attr: string; readonly base: bigint; readonly addToExisting: bigint }
  | { readonly attr: string; readonly ifAbsent: Value }
  | { readonly attr: string; readonly copyOf: string; readonly orElse: Value };

/** A condition on the stored item. */
export type Condition =
  | { readonly absent: string }
  | { readonly exists: string }
  | { readonly attr: string; readonly op: '=' | '<>' | '<' | '<=' | '>='; readonly value: Value }
  | { readonly and: readonly Condition[] }
  | { readonly or: readonly Condition[] };

/** One conditional update of one item. */
export interface ItemUpdate {
  readonly key: ItemKey;
  readonly set: readonly Assignment[];
  /** Attributes to remove. */
  readonly remove?: readonly string[];
  readonly condition?: Condition;
}

/** Checks a condition on an item without writing it (a transaction fails if it does not hold). */
export interface ItemCheck {
  readonly key: ItemKey;
  readonly check: Condition;
}

/** Deletes one item, if the condition holds. */
export interface ItemDelete {
  readonly key: ItemKey;
  readonly delete: true;
  readonly condition?: Condition;
}

/** One write (or check) of a transaction. */
export type ItemWrite = ItemUpdate | ItemDelete | ItemCheck;

/** One page of a partition, in sort-key order; `next` continues after the last item. */
export interface QueryPage {
  readonly items: readonly { readonly key: ItemKey; readonly state: ItemState }[];
  readonly next?: string;
}

/** Success carries the new item; a failed condition carries the item as it was. */
export type UpdateResult =
  | { readonly ok: true; readonly item: ItemState }
  | { readonly ok: false; readonly item: ItemState | undefined };

/** Why one update of a cancelled transaction failed. */
export type TransactFailure =
  | { readonly reason: 'none' }
  | { readonly reason: 'condition'; readonly item: ItemState | undefined }
  | { readonly reason: 'conflict' };

/** A transaction either commits, or reports per update why it was cancelled. */
export type TransactResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly failures: readonly TransactFailure[] };

/** What the engine needs from storage. */
export interface Store {
  /** One conditional UpdateItem: ALL_NEW on success, ALL_OLD when the condition fails. */
  update(update: ItemUpdate): Promise<UpdateResult>;
  /**
   * All-or-nothing updates (and condition checks); a failed condition reports the old item of
   * that write.
   */
  transact(writes: readonly (ItemUpdate | ItemCheck)[]): Promise<TransactResult>;
  /** A strongly consistent read. */
  get(key: ItemKey): Promise<ItemState | undefined>;
}

/** How to list a partition. */
export interface QueryOptions {
  readonly limit: number;
  /** Continue after this sort key. */
  readonly after?: string;
  readonly descending?: boolean;
  /** Only sort keys from the first to the second, both included. */
  readonly between?: readonly [string, string];
}

/** What the admin API needs on top: listing a partition, mixed transactions. */
export interface AdminStore extends Store {
  /**
   * All-or-nothing writes (updates, deletes and condition checks). With `token`, sending the
   * same writes again within 10 minutes applies them once (DynamoDB's ClientRequestToken).
   */
  transact(
    writes: readonly ItemWrite[],
    options?: { readonly token?: string },
  ): Promise<TransactResult>;
  /** Up to `limit` items of partition `pk`, after sort key `after`, strongly consistent. */
  query(pk: string, options: QueryOptions): Promise<QueryPage>;
}
