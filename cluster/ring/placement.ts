/**
 * Placement by scope (DESIGN §4): a key scope (a volume with its snapshots and clones) lives in one
 * partition, the top `partitionPower` bits of H(cluster salt, project, scope). Keys of one scope then
 * share one replica set, so a scope's listing, and the clone of a snapshot, touch one set of peers.
 *
 * H is SHA-256 over a domain tag and the three inputs, each length-prefixed so that no two
 * different (salt, project, scope) triples hash the same bytes ("ab"+"c" is not "a"+"bc"). The salt
 * keeps placement unpredictable to clients choosing scope names, and different between clusters.
 */
import { hash } from "node:crypto";
import { PARTITION_POWER_MAX } from "./partition.js";
import { RingError } from "./ring-error.js";

/** Changing the hash would move every scope: the tag names its version. */
const SCOPE_DOMAIN = Buffer.from("lockbox scope placement v1\0", "ascii");
/** Project and scope names are at most 128 characters (src/keys/validation.ts); UTF-8 at most 4 bytes each. */
const NAME_BYTES_MAX = 512;

/** The top 32 bits of H(clusterSalt, project, scope), as an unsigned integer. */
export function scopeHash32(clusterSalt: Uint8Array, project: string, scope: string): number {
  if (!(clusterSalt instanceof Uint8Array) || clusterSalt.length === 0) {
    throw new RingError("INVALID_ARGUMENT", "clusterSalt must be non-empty bytes");
  }
  const p = name(project, "project");
  const sc = name(scope, "scope");
  // One buffer and a one-shot hash: this runs for every key created and every scope listed.
  const buf = Buffer.allocUnsafe(SCOPE_DOMAIN.length + 12 + clusterSalt.length + p.length + sc.length);
  let at = SCOPE_DOMAIN.copy(buf, 0);
  for (const part of [clusterSalt, p, sc]) {
    at = buf.writeUInt32BE(part.length, at);
    buf.set(part, at);
    at += part.length;
  }
  return hash("sha256", buf, "buffer").readUInt32BE(0);
}

/** The partition of a scope: the top `partitionPower` bits of its hash. */
export function scopePartition(
  clusterSalt: Uint8Array,
  project: string,
  scope: string,
  partitionPower: number,
): number {
  return partitionOfHash32(scopeHash32(clusterSalt, project, scope), partitionPower);
}

/** The top `partitionPower` bits of a 32-bit placement hash. */
export function partitionOfHash32(hash32: number, partitionPower: number): number {
  if (!Number.isInteger(partitionPower) || partitionPower < 0 || partitionPower > PARTITION_POWER_MAX) {
    throw new RingError("INVALID_ARGUMENT", `partitionPower must be an integer in 0..${PARTITION_POWER_MAX}`);
  }
  if (!Number.isInteger(hash32) || hash32 < 0 || hash32 > 0xffffffff) {
    throw new RingError("INVALID_ARGUMENT", "a placement hash is an unsigned 32-bit integer");
  }
  return partitionPower === 0 ? 0 : hash32 >>> (32 - partitionPower);
}

function name(value: string, what: string): Buffer {
  if (typeof value !== "string" || value.length === 0)
    throw new RingError("INVALID_ARGUMENT", `${what} must be a non-empty string`);
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > NAME_BYTES_MAX)
    throw new RingError("INVALID_ARGUMENT", `${what} is longer than ${NAME_BYTES_MAX} bytes`);
  return bytes;
}
