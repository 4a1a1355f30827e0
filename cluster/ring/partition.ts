/**
 * Where a key lives on the ring: its partition is the top `partitionPower` bits of
 * SHA-256(clusterSalt || keyId). Every peer (and the ring builder) must compute it the same way,
 * so this module is the single definition. The salt keeps partition placement unpredictable to
 * clients choosing ids, and different between clusters.
 */
import { createHash } from "node:crypto";

/** Largest partition power the ring supports (2^24 partitions); keeps the value a safe 32-bit int. */
export const PARTITION_POWER_MAX = 24;

export function partitionOf(clusterSalt: Uint8Array, keyId: string, partitionPower: number): number {
  if (!Number.isInteger(partitionPower) || partitionPower < 0 || partitionPower > PARTITION_POWER_MAX) {
    throw new RangeError(
      `partitionPower must be an integer in 0..${PARTITION_POWER_MAX}, got ${partitionPower}`,
    );
  }
  if (clusterSalt.length === 0) throw new RangeError("clusterSalt must not be empty");
  if (partitionPower === 0) return 0;
  const digest = createHash("sha256").update(clusterSalt).update(keyId, "utf8").digest();
  // The first four digest bytes hold at least PARTITION_POWER_MAX bits; `>>> 0` keeps it unsigned.
  const top32 = digest.readUInt32BE(0);
  return top32 >>> (32 - partitionPower);
}

/** Number of partitions for a partition power. */
export const partitionCount = (partitionPower: number): number => 2 ** partitionPower;
