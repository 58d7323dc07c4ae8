/**
 * A bounded map that forgets its least recently written entries: the engine's memory of item
 * states and settled leases, and the configuration cache, all keep at most `size` entries.
 *
 * When full it forgets the oldest sixteenth (at least one) at once. A JavaScript Map keeps
 * deleted entries as holes until it rehashes, and finding the oldest live entry walks past them:
 * dropping one entry per write made every write of a full map pay for that walk, while dropping a
 * batch spreads it over many writes (docs/design.md, "Figures behind design decisions").
 */
export class Recent<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly size: number) {}
  get(key: string): V | undefined {
    return this.#map.get(key);
  }
  delete(key: string): void {
    this.#map.delete(key);
  }
  clear(): void {
    this.#map.clear();
  }
  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.size) {
      let more = this.size >> 4;
      for (const oldest of this.#map.keys()) if (this.#map.delete(oldest) && more-- < 1) break;
    }
  }
}
