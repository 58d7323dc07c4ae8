/** JSON with object keys sorted: two equal documents print the same. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );

/** Between the parts of a {@link joinKey}. */
export const KEY_SEPARATOR = '\u0000';

/**
 * One string for a tuple of names, as a Map key: (scope, limit name), (pk, sk), (kind, name).
 * The parts never contain U+0000 (identifiers cannot), so different tuples never meet.
 */
export const joinKey = (...parts: readonly string[]): string => parts.join(KEY_SEPARATOR);
