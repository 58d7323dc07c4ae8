/**
 * The cursors of every listing (plans, entities, resources, the audit trail, budget alerts): the
 * sort key a page ended at, base64url. A cursor that is not one (another encoding, or a key that
 * the listing's items never have) is a 400 naming `cursor`, never an empty or misplaced page.
 */
import { ValidationError } from '../errors.js';
import type { AdminStore, ItemState, QueryPage } from './types.js';

/** The cursor that continues after the item with sort key `sk`. */
export const encodeCursor = (sk: string): string => Buffer.from(sk).toString('base64url');

/**
 * The sort key a cursor continues after (undefined: none given); `isKey` says whether a sort key
 * is one of the listing's.
 *
 * @throws {ValidationError} `cursor`: not a cursor of this listing.
 */
export function decodeCursor(
  cursor: string | undefined,
  isKey: (sk: string) => boolean,
): string | undefined {
  if (cursor === undefined) return undefined;
  const sk = Buffer.from(cursor, 'base64url').toString('utf8');
  // DynamoDB's sort keys are at most 1,024 bytes: a longer one is no position in any listing.
  if (!sk || Buffer.byteLength(sk) > 1_024 || encodeCursor(sk) !== cursor || !isKey(sk)) {
    throw new ValidationError('cursor', 'not a cursor: pass back the `next` of the page before');
  }
  return sk;
}

/** An ISO 8601 UTC instant, as the audit trail's and the alerts' sort keys begin. */
const INSTANT = String.raw`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z`;

/** An audit entry's sort key: its instant and 12 hex digits. */
export const isAuditKey = (sk: string): boolean => new RegExp(`^${INSTANT}#[0-9a-f]{12}$`).test(sk);

/** A budget alert's sort key: its window's instant, then its item's key, limit and threshold. */
export const isAlertKey = (sk: string): boolean => new RegExp(`^${INSTANT}#[^#]+#.`).test(sk);

/** Items a filtered listing reads at most for one page (it may answer fewer than asked). */
export const FILTER_SCAN_AT_MOST = 1_000;

/**
 * A page of the partition `pk` of only the items `keep` accepts: up to `limit` of them, reading
 * at most {@link FILTER_SCAN_AT_MOST} items. `next` continues after the last item read when the
 * partition may hold more, so a page can hold fewer than `limit` (even none) and still have one.
 */
export async function queryWhere(
  store: AdminStore,
  pk: string,
  options: {
    readonly limit: number;
    readonly after?: string | undefined;
    readonly descending?: boolean;
    /** @default {@link FILTER_SCAN_AT_MOST} */
    readonly scanAtMost?: number;
  },
  keep: (state: ItemState) => boolean,
): Promise<QueryPage> {
  const items: QueryPage['items'][number][] = [];
  let after = options.after;
  let scanned = 0;
  for (;;) {
    const page = await store.query(pk, {
      limit: 100,
      ...(options.descending ? { descending: true } : {}),
      ...(after !== undefined ? { after } : {}),
    });
    for (const [i, item] of page.items.entries()) {
      scanned++;
      if (!keep(item.state)) continue;
      items.push(item);
      if (items.length < options.limit) continue;
      const last = i === page.items.length - 1 && page.next === undefined;
      return last ? { items } : { items, next: item.key.sk };
    }
    if (page.next === undefined) return { items };
    after = page.next;
    if (scanned >= (options.scanAtMost ?? FILTER_SCAN_AT_MOST)) return { items, next: after };
  }
}
