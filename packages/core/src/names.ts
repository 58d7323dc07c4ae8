/**
 * Names users choose (metrics, limits, entities, resources, plans) are keys of plain objects
 * only through this module: read with {@link own}, which never answers an inherited member
 * (`constructor`, `toString`), and written through a `Map` or built with `Object.fromEntries`,
 * which defines own properties (`__proto__` is then a name like any other). `npm run lint` runs
 * scripts/check-names.ts, which fails on any other read or write of a string-indexed object by
 * a string that is not a literal.
 */

/** `record[key]` when `key` is its own property; otherwise undefined, whatever it inherits. */
export function own<V>(
  record: Readonly<Record<string, V>> | undefined,
  key: string,
): V | undefined {
  // names-ok: the guard every other read of a name goes through
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined;
}
