/**
 * The cluster master keys a peer holds, indexed by epoch (after hashicorp/vault's keyring).
 * Copy-on-write: `withEpoch` returns a new keyring, so a reader holding the old one never sees a
 * half-rotated state. The active epoch is the highest one; older epochs stay until nothing refers
 * to them (rotation re-wraps in the background, DESIGN.md §2).
 */
export const MASTER_KEY_BYTES = 32;

export class Keyring {
  private constructor(private readonly keys: ReadonlyMap<number, Uint8Array>) {}

  static empty(): Keyring {
    return new Keyring(new Map());
  }

  /** A new keyring that also holds `key` as epoch `epoch`. The key bytes are copied. */
  withEpoch(epoch: number, key: Uint8Array): Keyring {
    if (!Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff) {
      throw new RangeError(`epoch must be an integer in 1..2^32-1, got ${epoch}`);
    }
    if (key.length !== MASTER_KEY_BYTES) throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
    if (this.keys.has(epoch)) throw new RangeError(`epoch ${epoch} already in the keyring`);
    const next = new Map(this.keys);
    next.set(epoch, new Uint8Array(key));
    return new Keyring(next);
  }

  /** The key of `epoch`, or undefined. The returned bytes belong to the keyring: do not keep them. */
  key(epoch: number): Uint8Array | undefined {
    return this.keys.get(epoch);
  }

  /** The highest epoch, or 0 for an empty keyring. */
  get activeEpoch(): number {
    let max = 0;
    for (const e of this.keys.keys()) max = Math.max(max, e);
    return max;
  }

  get epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  get size(): number {
    return this.keys.size;
  }

  /** Overwrites every key this keyring holds. Keyrings derived by withEpoch hold their own copies. */
  zeroize(): void {
    for (const k of this.keys.values()) k.fill(0);
  }
}
