/**
 * A bounded, short-lived cache of fetched key material, so a storage node
 * that attaches many volumes of one key does not ask the peer every time.
 *
 * Bounds: at most `entriesMax` keys (least recently used goes first) and each
 * for at most `ageMaxMs` after it was fetched. Material leaving the cache for
 * any reason is overwritten with zeros. Callers get copies, so zeroing here
 * never touches a buffer a caller holds, and a caller scribbling on its copy
 * never corrupts the cache. The cache refuses to be serialised or inspected.
 */
import { inspect } from "node:util";

export interface KeyCacheOptions {
  entriesMax: number;
  ageMaxMs: number;
  /** Injected for tests; defaults to Date.now. */
  nowMs?: () => number;
}

interface Entry<M> {
  material: Buffer;
  meta: M;
  fetchedAtMs: number;
}

export class KeyCache<M> {
  readonly entriesMax: number;
  readonly ageMaxMs: number;
  readonly #nowMs: () => number;
  // A Map iterates in insertion order; re-inserting on hit makes it an LRU.
  readonly #entries = new Map<string, Entry<M>>();

  constructor(options: KeyCacheOptions) {
    if (!Number.isInteger(options.entriesMax) || options.entriesMax < 1) {
      throw new RangeError(`entriesMax must be a positive integer, got ${options.entriesMax}`);
    }
    if (!Number.isFinite(options.ageMaxMs) || options.ageMaxMs <= 0) {
      throw new RangeError(`ageMaxMs must be a positive number, got ${options.ageMaxMs}`);
    }
    this.entriesMax = options.entriesMax;
    this.ageMaxMs = options.ageMaxMs;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** A copy of the cached material and its metadata, or undefined if absent or too old. */
  get(id: string): { material: Buffer; meta: M } | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    if (this.#nowMs() - entry.fetchedAtMs >= this.ageMaxMs) {
      this.delete(id);
      return undefined;
    }
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    return { material: Buffer.from(entry.material), meta: entry.meta };
  }

  /** Stores a copy of `material`. */
  set(id: string, material: Uint8Array, meta: M): void {
    this.delete(id);
    this.#entries.set(id, { material: Buffer.from(material), meta, fetchedAtMs: this.#nowMs() });
    while (this.#entries.size > this.entriesMax) {
      const oldest = this.#entries.keys().next().value as string;
      this.delete(oldest);
    }
    if (this.#entries.size > this.entriesMax) throw new Error("KeyCache invariant: size above entriesMax");
  }

  delete(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    entry.material.fill(0);
    return this.#entries.delete(id);
  }

  /** Drops expired entries; get() also does so lazily. */
  prune(): void {
    const nowMs = this.#nowMs();
    for (const [id, entry] of this.#entries) {
      if (nowMs - entry.fetchedAtMs >= this.ageMaxMs) this.delete(id);
    }
  }

  clear(): void {
    for (const id of [...this.#entries.keys()]) this.delete(id);
  }

  // Neither JSON.stringify nor console.log / util.inspect may show material.
  toJSON(): { size: number } {
    return { size: this.size };
  }

  [inspect.custom](): string {
    return `KeyCache { size: ${this.size}, entriesMax: ${this.entriesMax}, ageMaxMs: ${this.ageMaxMs} }`;
  }
}
