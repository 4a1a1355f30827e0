/**
 * What the joiner's quote must carry as extraData: H(nonce || ephemeral
 * public key) (DESIGN.md §5). The TPM signs it, so the verifier knows the
 * ephemeral key it will wrap the CMK to was chosen by the attested machine
 * for this nonce, and no one in between can swap in a key of their own.
 */
import { createHash } from "node:crypto";

/** An uncompressed P-256 point: 0x04 || X || Y. */
export const EPHEMERAL_PUBLIC_KEY_BYTES = 65;

export function quoteExtraData(nonce: Uint8Array, ephemeralPublicKey: Uint8Array): Uint8Array {
  return createHash("sha256").update(nonce).update(ephemeralPublicKey).digest();
}
