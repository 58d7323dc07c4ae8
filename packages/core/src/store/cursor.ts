/**
 * The cursors of every listing (plans, entities, resources, the audit trail, budget alerts): the
 * sort key a page ended at, base64url. A cursor that is not one (another encoding, or a key that
 * the listing's items never have) is a 400 naming `cursor`, never an empty or misplaced page.
 */
import { ValidationError } from '../errors.js';

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
  if (!sk || encodeCursor(sk) !== cursor || !isKey(sk)) {
    throw new ValidationError('cursor', 'not a cursor: pass back the `next` of the page before');
  }
  return sk;
}

/** Sort keys that start with an ISO 8601 UTC instant and `#` (audit entries, budget alerts). */
export const startsWithInstant = (sk: string): boolean =>
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z#./.test(sk);
