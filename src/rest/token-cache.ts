/**
 * A bounded map with per-entry expiry, for validated Keystone tokens (keyed by a hash of the
 * token, never the token). Full, it first drops expired entries, then the oldest ones: memory
 * stays bounded however many distinct tokens arrive. Map keeps insertion order, so "oldest" is
 * the first key; a hit does not refresh an entry (its expiry is the token's, not a usage clock).
 */
export class TokenCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAtMs: number }>();

  constructor(readonly entriesMax: number) {
    if (!Number.isSafeInteger(entriesMax) || entriesMax < 1) throw new RangeError("entriesMax must be >= 1");
  }

  get(key: string, nowMs: number): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.expiresAtMs <= nowMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V, expiresAtMs: number, nowMs: number): void {
    this.entries.delete(key);
    if (this.entries.size >= this.entriesMax) this.evict(nowMs);
    this.entries.set(key, { value, expiresAtMs });
  }

  get size(): number {
    return this.entries.size;
  }

  private evict(nowMs: number): void {
    for (const [k, e] of this.entries) if (e.expiresAtMs <= nowMs) this.entries.delete(k);
    for (const k of this.entries.keys()) {
      if (this.entries.size < this.entriesMax) break;
      this.entries.delete(k);
    }
  }
}
