/**
 * Writes on a condition, as HTTP's `If-Match` and `If-None-Match` ask for: the entity tag of a
 * stored document, and the check a write makes against what is stored before it writes.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical.js';
import { PreconditionFailedError } from '../errors.js';
import type { StoredConfig } from './admin.js';
import type { ConfigKind } from './documents.js';

/**
 * A stored document's entity tag: its version and a digest of which document it is, what it holds
 * and when and by whom it was written. A document deleted and created again starts at version 1
 * again, and its tag still differs from the one before's, so a writer holding the old tag cannot
 * write over the new document unseen; nor does one document's tag match another's, written alike
 * at the same moment. Settings never stored have the tag `0` (their version then).
 */
export function entityTag(stored: StoredConfig | undefined): string | undefined {
  if (!stored) return undefined;
  const { kind, name, updatedAt, updatedBy, config } = stored;
  const digest = createHash('sha256')
    .update(`${kind}\n${name}\n${updatedAt}\n${updatedBy}\n${canonicalJson(config)}`)
    .digest('base64url')
    .slice(0, 12);
  return `${stored.version}-${digest}`;
}

/** The tag of the settings while none are stored (their version is then 0). */
export const UNSTORED_SETTINGS_TAG = '0';

/**
 * What a write requires of the stored document, as HTTP's `If-Match` and `If-None-Match` do:
 * `tags` that its {@link entityTag} is one of, `exists` that one is stored (true) or not.
 */
export type WriteCondition = { readonly tags: readonly string[] } | { readonly exists: boolean };

/** Refuses a write whose condition the stored document (undefined: none) does not meet. */
export function check<K extends ConfigKind>(
  kind: K,
  name: string,
  stored: StoredConfig<K> | undefined,
  condition: WriteCondition | undefined,
): void {
  if (condition === undefined) return;
  const tag = entityTag(stored) ?? (kind === 'settings' ? UNSTORED_SETTINGS_TAG : undefined);
  const met =
    'exists' in condition
      ? (stored !== undefined) === condition.exists
      : tag !== undefined && condition.tags.includes(tag);
  if (met) return;
  const asked =
    'exists' in condition
      ? condition.exists
        ? 'one stored'
        : 'none stored'
      : `the version tagged ${condition.tags.map((t) => `"${t}"`).join(' or ')}`;
  const now = stored ? `version ${stored.version} ("${tag}") is stored` : 'none is stored';
  throw new PreconditionFailedError(
    `${kind} ${name}: asked for ${asked}, and ${now}`,
    stored?.version ?? 0,
  );
}
