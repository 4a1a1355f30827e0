/**
 * A check value of a cluster master key: HMAC-SHA256 under the CMK of its
 * cluster id and epoch. Stored beside the CMK where it must be recognised
 * without being revealed (in each recovery share, in the sealed file), it
 * tells a right CMK from a wrong one for certain (a wrong one matches with
 * probability 2^-256), and it names the cluster and epoch it belongs to, so a
 * CMK of another cluster or epoch does not pass either. It reveals nothing
 * usable about the key (HMAC is a PRF).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { MASTER_KEY_BYTES } from "./keyring.js";

export const CMK_CHECK_BYTES = 32;
const LABEL = "lockbox/v1/cmk-check";

export function cmkCheckValue(cmk: Uint8Array, clusterId: string, epoch: number): Uint8Array {
  if (cmk.length !== MASTER_KEY_BYTES) throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
  if (!Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff) throw new RangeError("bad epoch");
  const e = Buffer.alloc(4);
  e.writeUInt32BE(epoch);
  return new Uint8Array(
    createHmac("sha256", cmk)
      .update(LABEL)
      .update(Uint8Array.of(0))
      .update(clusterId, "utf8")
      .update(Uint8Array.of(0))
      .update(e)
      .digest(),
  );
}

/** Whether `cmk` is the key `check` was made from, for this cluster and epoch (constant time). */
export function cmkMatchesCheck(
  cmk: Uint8Array,
  clusterId: string,
  epoch: number,
  check: Uint8Array,
): boolean {
  if (cmk.length !== MASTER_KEY_BYTES || check.length !== CMK_CHECK_BYTES) return false;
  return timingSafeEqual(cmkCheckValue(cmk, clusterId, epoch), check);
}
