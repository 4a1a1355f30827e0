/**
 * The attested join's second step (DESIGN.md §5): the joiner, after sealing the CMK to its own TPM,
 * proves to any member that it holds the CMK the admission sent, and only then does the member become
 * active. The proof is an HMAC under a key derived from the CMK (HKDF, a label of its own, so the CMK
 * itself keys nothing here), over the peer id and the serial of the certificate that admission issued:
 * only the joiner that unwrapped the CMK (or a member, which holds it anyway) can make it, any member
 * can check it, and it names exactly one admission, so replaying it confirms nothing else.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";

const LABEL = "lockbox join confirm v1";
export const CONFIRM_PROOF_BYTES = 32;

export function joinConfirmProof(cmk: Uint8Array, peerId: string, certificateSerial: string): Uint8Array {
  const key = Buffer.from(hkdfSync("sha256", cmk, new Uint8Array(0), LABEL, 32));
  try {
    return new Uint8Array(
      createHmac("sha256", key).update(`${peerId}\0${certificateSerial.toUpperCase()}`).digest(),
    );
  } finally {
    key.fill(0);
  }
}

export function checkJoinConfirmProof(
  cmk: Uint8Array,
  peerId: string,
  certificateSerial: string,
  proof: Uint8Array,
): boolean {
  if (proof.length !== CONFIRM_PROOF_BYTES) return false;
  return timingSafeEqual(joinConfirmProof(cmk, peerId, certificateSerial), proof);
}
