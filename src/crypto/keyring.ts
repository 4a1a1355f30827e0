/**
 * The cluster master keys a peer holds, indexed by epoch (after hashicorp/vault's keyring).
 * Copy-on-write: every change returns a new keyring, so a reader holding the old one never sees a
 * half-rotated state.
 *
 * The active epoch (the one new wraps use) is explicit, not simply the highest: during a rotation a
 * peer holds the next epoch before the cluster activates it (DESIGN.md §5 "Rotation"; a KEK wrapped
 * under an epoch some member does not hold yet would be unreadable there), and keeps the previous one
 * until it is retired. withEpoch() keeps the old rule for keyrings built from a sealed file or a
 * recovery: the highest epoch added becomes active.
 */
export const MASTER_KEY_BYTES = 32;

export class Keyring {
  private constructor(
    private readonly keys: ReadonlyMap<number, Uint8Array>,
    private readonly active: number,
  ) {}

  static empty(): Keyring {
    return new Keyring(new Map(), 0);
  }

  /** A new keyring that also holds `key` as epoch `epoch`, active if it is the highest. The key bytes are copied. */
  withEpoch(epoch: number, key: Uint8Array): Keyring {
    const next = this.withStagedEpoch(epoch, key);
    return epoch > this.active ? new Keyring(next.keys, epoch) : next;
  }

  /** A new keyring that also holds `key` as epoch `epoch` without making it active (a rotation's next epoch). */
  withStagedEpoch(epoch: number, key: Uint8Array): Keyring {
    if (!Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff) {
      throw new RangeError(`epoch must be an integer in 1..2^32-1, got ${epoch}`);
    }
    if (key.length !== MASTER_KEY_BYTES) throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
    if (this.keys.has(epoch)) throw new RangeError(`epoch ${epoch} already in the keyring`);
    const next = new Map(this.keys);
    next.set(epoch, new Uint8Array(key));
    return new Keyring(next, this.active === 0 ? epoch : this.active);
  }

  /** A new keyring whose active epoch is `epoch` (which it must hold); the keys are shared, not copied. */
  withActive(epoch: number): Keyring {
    if (!this.keys.has(epoch)) throw new RangeError(`epoch ${epoch} is not in the keyring`);
    return new Keyring(this.keys, epoch);
  }

  /**
   * A new keyring without `epoch` (a retired one), its key zeroed in the old keyring's map too: call it
   * only on the keyring the barrier holds. The active epoch cannot be dropped.
   */
  without(epoch: number): Keyring {
    if (epoch === this.active) throw new RangeError(`epoch ${epoch} is the active one`);
    const next = new Map(this.keys);
    next.get(epoch)?.fill(0);
    next.delete(epoch);
    return new Keyring(next, this.active);
  }

  /** The key of `epoch`, or undefined. The returned bytes belong to the keyring: do not keep them. */
  key(epoch: number): Uint8Array | undefined {
    return this.keys.get(epoch);
  }

  /** The epoch new wraps use, or 0 for an empty keyring. */
  get activeEpoch(): number {
    return this.active;
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
