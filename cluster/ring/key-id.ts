/**
 * Key ids that carry their placement: an RFC 9562 version-8 UUID whose first 32 bits are the top 32
 * bits of the key's scope hash (placement.ts). Any peer finds a key's partition from its id alone,
 * without the salt or a lookup, and a key's partition is its scope's partition at every partition
 * power up to 32.
 *
 * Layout (RFC 9562 §5.8 leaves custom_a, custom_b and custom_c to the implementation):
 *   bits 0..31   placement hash (custom_a, first 32 of its 48 bits)
 *   bits 32..47  random           (rest of custom_a)
 *   bits 48..51  version 0b1000
 *   bits 52..63  random           (custom_b)
 *   bits 64..65  variant 0b10
 *   bits 66..127 random           (custom_c)
 * 90 random bits: ids of one scope collide with probability about n²/2^91.
 *
 * Ids minted before placement by scope are version-4 UUIDs; their partition stays the hash of the
 * id (partition.ts), so `partitionOfKeyId` serves both and old records are found where they are.
 */
import { partitionOf } from "./partition.js";
import { partitionOfHash32 } from "./placement.js";
import { RingError } from "./ring-error.js";

export const KEY_ID_RANDOM_BYTES = 16;

/**
 * Is `id` a UUID in its canonical text form (8-4-4-4-12 hex digits, either case)? A loop over the
 * characters, not a RegExp: every replica checks the id of every record it receives.
 */
function isUuid(id: string): boolean {
  if (id.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = id.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))) {
      return false;
    }
  }
  return true;
}

/** A version-8 key id carrying `placementHash32`, its other bits from `random` (16 fresh random bytes). */
export function placedKeyId(placementHash32: number, random: Uint8Array): string {
  if (!Number.isInteger(placementHash32) || placementHash32 < 0 || placementHash32 > 0xffffffff) {
    throw new RingError("INVALID_ARGUMENT", "a placement hash is an unsigned 32-bit integer");
  }
  if (!(random instanceof Uint8Array) || random.length !== KEY_ID_RANDOM_BYTES) {
    throw new RingError("INVALID_ARGUMENT", `a key id needs ${KEY_ID_RANDOM_BYTES} random bytes`);
  }
  const b = Buffer.from(random); // a copy: the caller's bytes are not changed
  b.writeUInt32BE(placementHash32, 0);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The placement hash a key id carries, or undefined when the id is a UUID of another version
 * (a legacy id) or of another variant. Throws INVALID_ARGUMENT when `id` is not a UUID at all.
 */
export function keyIdPlacement(id: string): number | undefined {
  if (typeof id !== "string" || !isUuid(id))
    throw new RingError("INVALID_ARGUMENT", "a key id must be a UUID");
  const version = Number.parseInt(id[14]!, 16);
  const variant = Number.parseInt(id[19]!, 16) >> 2;
  if (version !== 8 || variant !== 0b10) return undefined;
  return Number.parseInt(id.slice(0, 8), 16);
}

/** The partition of a key: from the id's bits for a version-8 id, from the salted id hash for a legacy one. */
export function partitionOfKeyId(clusterSalt: Uint8Array, id: string, partitionPower: number): number {
  const placement = keyIdPlacement(id);
  if (placement === undefined) return partitionOf(clusterSalt, id.toLowerCase(), partitionPower);
  return partitionOfHash32(placement, partitionPower);
}
