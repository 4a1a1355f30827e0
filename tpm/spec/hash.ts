import { TPM_ALG_ID } from "./constants.js";

/** Digest sizes of the hash algorithms a TPM may name; undefined for others. */
const DIGEST_BYTES: ReadonlyMap<number, { bytes: number; node: string }> = new Map([
  [TPM_ALG_ID.SHA1, { bytes: 20, node: "sha1" }],
  [TPM_ALG_ID.SHA256, { bytes: 32, node: "sha256" }],
  [TPM_ALG_ID.SHA384, { bytes: 48, node: "sha384" }],
  [TPM_ALG_ID.SHA512, { bytes: 64, node: "sha512" }],
  [TPM_ALG_ID.SM3_256, { bytes: 32, node: "sm3" }],
  [TPM_ALG_ID.SHA3_256, { bytes: 32, node: "sha3-256" }],
  [TPM_ALG_ID.SHA3_384, { bytes: 48, node: "sha3-384" }],
  [TPM_ALG_ID.SHA3_512, { bytes: 64, node: "sha3-512" }],
]);

export function digestSize(hashAlg: number): number | undefined {
  return DIGEST_BYTES.get(hashAlg)?.bytes;
}

/** node:crypto's name for a TPM hash algorithm, or undefined. */
export function nodeHashName(hashAlg: number): string | undefined {
  return DIGEST_BYTES.get(hashAlg)?.node;
}

/** Largest digest any supported hash produces (TPMU_HA). */
export const MAX_DIGEST_BYTES = 64;
/** TPM2B_NAME: a hash algorithm id then a digest, or a 4-byte handle. */
export const MAX_NAME_BYTES = 2 + MAX_DIGEST_BYTES;
