/**
 * The TPM's key derivation functions (TPM 2.0 Part 1 §11.4.10): KDFa, the
 * HMAC-based counter-mode KDF (SP 800-108) that derives session, credential
 * and duplication keys, and KDFe, the hash-based KDF (SP 800-56A) that turns
 * an ECDH shared secret into a seed.
 *
 * Labels are C strings in the specification ("IDENTITY", "STORAGE",
 * "INTEGRITY", "CFB", "ATH", "SECRET"): the terminating zero octet is part of
 * the input and is appended here, so callers pass the label without it.
 */
import { createHash, createHmac } from "node:crypto";

/** Hash algorithms the KDFs accept, by node:crypto name. */
export type KdfHash = "sha1" | "sha256" | "sha384" | "sha512";

/** Largest derivation allowed: far beyond any TPM key, small enough to bound work. */
export const KDF_BITS_MAX = 8 * 1024 * 8;

export class KdfError extends Error {
  override readonly name = "KdfError";
  constructor(
    readonly code: "bad-bits" | "bad-label",
    message: string,
  ) {
    super(message);
  }
}

/**
 * KDFa(hashAlg, key, label, contextU, contextV, bits):
 * K(i) = HMAC_key([i]32 || label || 0x00 || contextU || contextV || [bits]32),
 * concatenated for i = 1.. and cut to `bits`; when bits is not a multiple of
 * 8, the unused high-order bits of the first octet are cleared.
 */
export function kdfa(
  hash: KdfHash,
  key: Uint8Array,
  label: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Uint8Array {
  checkBits(bits);
  const labelBytes = labelWithTerminator(label);
  const bitsBytes = uint32(bits);
  return counterMode(bits, (counter) =>
    createHmac(hash, key)
      .update(uint32(counter))
      .update(labelBytes)
      .update(contextU)
      .update(contextV)
      .update(bitsBytes)
      .digest(),
  );
}

/**
 * KDFe(hashAlg, Z, use, partyUInfo, partyVInfo, bits):
 * K(i) = H([i]32 || Z || use || 0x00 || partyUInfo || partyVInfo), where Z is
 * the x-coordinate of the ECDH shared point, padded to the curve's size.
 */
export function kdfe(
  hash: KdfHash,
  z: Uint8Array,
  use: string,
  partyUInfo: Uint8Array,
  partyVInfo: Uint8Array,
  bits: number,
): Uint8Array {
  checkBits(bits);
  const useBytes = labelWithTerminator(use);
  return counterMode(bits, (counter) =>
    createHash(hash)
      .update(uint32(counter))
      .update(z)
      .update(useBytes)
      .update(partyUInfo)
      .update(partyVInfo)
      .digest(),
  );
}

function counterMode(bits: number, block: (counter: number) => Buffer): Uint8Array {
  const bytes = Math.ceil(bits / 8);
  const out = Buffer.alloc(bytes);
  let filled = 0;
  for (let counter = 1; filled < bytes; counter++) {
    const k = block(counter);
    filled += k.copy(out, filled, 0, Math.min(k.length, bytes - filled));
  }
  if (bits % 8 !== 0) out[0]! &= (1 << (bits % 8)) - 1;
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits <= 0 || bits > KDF_BITS_MAX) {
    throw new KdfError("bad-bits", `bits must be an integer in 1..${KDF_BITS_MAX}, got ${bits}`);
  }
}

function labelWithTerminator(label: string): Buffer {
  if (label.includes("\0")) throw new KdfError("bad-label", "label must not contain a zero character");
  return Buffer.from(`${label}\0`, "latin1");
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}
