/**
 * Session-based parameter encryption with AES-CFB (TPM 2.0 Part 1 §21.3):
 * key and IV come from KDFa(authHash, sessionValue, "CFB", nonceNewer,
 * nonceOlder, keyBits + blockBits). Commands are encrypted with
 * (nonceCaller, nonceTPM), responses with (nonceTPM, nonceCaller).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { type KdfHash, kdfa } from "../crypto/kdf.js";
import { TPM_ALG_ID } from "../spec/constants.js";
import type { TpmtSymDef } from "../spec/schemes.js";
import { TpmClientError } from "./tpm-error.js";

const AES_BLOCK_BITS = 128;

function cipherName(symmetric: TpmtSymDef): string {
  if (symmetric.algorithm !== TPM_ALG_ID.AES || symmetric.mode !== TPM_ALG_ID.CFB) {
    throw new TpmClientError("UNSUPPORTED", "parameter encryption supports AES-CFB only");
  }
  if (![128, 192, 256].includes(symmetric.keyBits)) {
    throw new TpmClientError("UNSUPPORTED", `AES key size ${symmetric.keyBits} is not supported`);
  }
  return `aes-${symmetric.keyBits}-cfb`;
}

function keyAndIv(
  hash: KdfHash,
  symmetric: TpmtSymDef,
  sessionValue: Uint8Array,
  nonceNewer: Uint8Array,
  nonceOlder: Uint8Array,
): { key: Uint8Array; iv: Uint8Array } {
  const keyBytes = symmetric.keyBits / 8;
  const material = kdfa(
    hash,
    sessionValue,
    "CFB",
    nonceNewer,
    nonceOlder,
    symmetric.keyBits + AES_BLOCK_BITS,
  );
  return { key: material.subarray(0, keyBytes), iv: material.subarray(keyBytes) };
}

export function cfbEncrypt(
  hash: KdfHash,
  symmetric: TpmtSymDef,
  sessionValue: Uint8Array,
  nonceNewer: Uint8Array,
  nonceOlder: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const { key, iv } = keyAndIv(hash, symmetric, sessionValue, nonceNewer, nonceOlder);
  const cipher = createCipheriv(cipherName(symmetric), key, iv);
  return new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final()]));
}

export function cfbDecrypt(
  hash: KdfHash,
  symmetric: TpmtSymDef,
  sessionValue: Uint8Array,
  nonceNewer: Uint8Array,
  nonceOlder: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  const { key, iv } = keyAndIv(hash, symmetric, sessionValue, nonceNewer, nonceOlder);
  const decipher = createDecipheriv(cipherName(symmetric), key, iv);
  return new Uint8Array(Buffer.concat([decipher.update(ciphertext), decipher.final()]));
}
