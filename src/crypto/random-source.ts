/**
 * Randomness comes in through this seam so tests and the simulator can substitute a seeded source.
 * Production code uses `nodeRandomSource` (the OS CSPRNG via node:crypto).
 */
import { randomBytes } from "node:crypto";

export interface RandomSource {
  /** Returns `length` fresh random bytes. */
  bytes(length: number): Uint8Array;
}

export const nodeRandomSource: RandomSource = {
  // A view, not a copy: these bytes often become key material, and zeroize() on the result must
  // reach the only copy (randomBytes allocates its own ArrayBuffer, never the shared pool).
  bytes: (length) => {
    const b = randomBytes(length);
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  },
};

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
