/**
 * Randomness comes in through this seam so tests and the simulator can substitute a seeded source.
 * Production code uses `nodeRandomSource` (the OS CSPRNG via node:crypto).
 */
import { randomFillSync } from "node:crypto";

export interface RandomSource {
  /** Returns `length` fresh random bytes. */
  bytes(length: number): Uint8Array;
}

/** Bytes drawn from the CSPRNG at a time; a request of at least POOL_DIRECT_BYTES skips the pool. */
export const POOL_BYTES = 4096;
export const POOL_DIRECT_BYTES = 256;

/**
 * A RandomSource that draws from the CSPRNG a pool at a time (one randomFillSync per POOL_BYTES
 * instead of one per call: a create draws several small values) and hands each request out as a
 * copy it owns.
 *
 * zeroize() on a result must reach the only copy of those bytes, since they often become key
 * material. That holds because (1) the pool region a result is copied from is zeroed in the same
 * loop that copies it, before `bytes` returns, and is never handed out again (the next refill
 * overwrites the whole pool); and (2) every result has its own ArrayBuffer, allocated off the V8
 * heap (`new ArrayBuffer`): not a slice of a shared pool, and never an on-heap typed array, whose
 * bytes the garbage collector could copy elsewhere when it moves it. The pool itself is also an
 * ArrayBuffer, so its bytes never move either. The bytes not yet handed out are random, not yet
 * anyone's secret.
 *
 * `fill` is the CSPRNG (node's randomFillSync); tests pass one that records what it filled.
 */
export class PooledRandomSource implements RandomSource {
  private readonly pool: Uint8Array;
  /** Bytes of the pool handed out (and zeroed) since its last refill. */
  private used: number;

  constructor(private readonly fill: (buf: Uint8Array) => void = randomFillSync) {
    this.pool = new Uint8Array(new ArrayBuffer(POOL_BYTES));
    this.used = POOL_BYTES; // filled on first use, not at import
  }

  bytes(length: number): Uint8Array {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad random length ${length}`);
    const out = new Uint8Array(new ArrayBuffer(length));
    if (length >= POOL_DIRECT_BYTES) {
      this.fill(out);
      return out;
    }
    if (this.used + length > POOL_BYTES) {
      this.fill(this.pool);
      this.used = 0;
    }
    const pool = this.pool;
    const from = this.used;
    for (let i = 0; i < length; i++) {
      out[i] = pool[from + i]!;
      pool[from + i] = 0;
    }
    this.used = from + length;
    return out;
  }
}

export const nodeRandomSource: RandomSource = new PooledRandomSource();

/** A UUID v4 (RFC 9562 §5.4) drawn from `random`, lowercase canonical form. */
export function randomUuid(random: RandomSource): string {
  const b = random.bytes(16);
  if (b.length !== 16) throw new Error("RandomSource returned the wrong number of bytes");
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Buffer.from(b).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Overwrites a buffer holding secret bytes. Best effort: JS may have made copies we cannot reach. */
export function zeroize(buf: Uint8Array | undefined): void {
  buf?.fill(0);
}
