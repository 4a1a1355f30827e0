/**
 * The AES-256-GCM envelope every wrapped secret uses (DESIGN.md §2).
 *
 *   [format u8 = 2][epoch u32 BE][nonce 12 bytes][ciphertext][tag 16 bytes]
 *
 * `epoch` names the generation of the wrapping key (the CMK epoch for project KEKs, the KEK
 * generation for managed keys). The associated data is the header itself followed by the
 * canonical encoding of what the blob *is*: a generic `{kind, id, attributes}` binding
 * (binding.ts), so a blob copied onto another record, or a header edited in place, fails
 * authentication.
 *
 * Format 1 bound a key-shaped tuple (kind, key id, project, algorithm, bit length). lockbox has no
 * deployed stores yet, so format 2 replaced it outright: a format-1 blob is refused as malformed.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { LockboxError } from "../errors.js";
import { encodeBinding, type Binding } from "./binding.js";
import type { RandomSource } from "./random-source.js";

export const ENVELOPE_FORMAT = 2;
export const ENVELOPE_HEADER_BYTES = 1 + 4 + 12;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** What a wrapped blob is bound to: every field goes into the AAD. */
export type EnvelopeBinding = Binding;

/** Encrypts `plaintext` under `key` (32 bytes) for `binding`. */
export function sealEnvelope(
  key: Uint8Array,
  epoch: number,
  plaintext: Uint8Array,
  binding: EnvelopeBinding,
  random: RandomSource,
): Uint8Array {
  assertKey(key);
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) throw new RangeError(`bad epoch ${epoch}`);
  const nonce = random.bytes(NONCE_BYTES);
  if (nonce.length !== NONCE_BYTES) throw new Error("RandomSource returned the wrong number of bytes");
  const header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  header.writeUInt8(ENVELOPE_FORMAT, 0);
  header.writeUInt32BE(epoch, 1);
  header.set(nonce, 5);
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([header, encodeBinding(binding)]));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return new Uint8Array(Buffer.concat([header, body]));
}

/** Reads the epoch from an envelope header without decrypting; throws DATA_LOSS on a malformed blob. */
export function envelopeEpoch(blob: Uint8Array): number {
  if (blob.length < ENVELOPE_HEADER_BYTES + TAG_BYTES || blob[0] !== ENVELOPE_FORMAT) {
    throw new LockboxError("DATA_LOSS", "integrity check failed: malformed envelope");
  }
  return Buffer.from(blob.buffer, blob.byteOffset, blob.length).readUInt32BE(1);
}

/**
 * Decrypts an envelope. Any mismatch (wrong key, wrong binding, edited bytes) throws
 * LockboxError DATA_LOSS; callers add which record failed.
 */
export function openEnvelope(key: Uint8Array, blob: Uint8Array, binding: EnvelopeBinding): Uint8Array {
  assertKey(key);
  envelopeEpoch(blob); // validates the header
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const header = buf.subarray(0, ENVELOPE_HEADER_BYTES);
  const nonce = buf.subarray(5, ENVELOPE_HEADER_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const ciphertext = buf.subarray(ENVELOPE_HEADER_BYTES, buf.length - TAG_BYTES);
  // GCM decrypts before it checks the tag: when the check fails (a blob moved onto another
  // record), `update`'s output can be another key's real plaintext, so it is zeroed on that path too.
  let unauthenticated: Buffer | undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.concat([header, encodeBinding(binding)]));
    decipher.setAuthTag(tag);
    unauthenticated = decipher.update(ciphertext);
    const parts = [unauthenticated, decipher.final()];
    // Copy into one fresh buffer and wipe node's intermediate plaintext buffers.
    const plaintext = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      plaintext.set(p, at);
      at += p.length;
      p.fill(0);
    }
    return plaintext;
  } catch (cause) {
    unauthenticated?.fill(0);
    throw new LockboxError("DATA_LOSS", "integrity check failed", undefined, { cause });
  }
}

function assertKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`wrapping key must be ${KEY_BYTES} bytes`);
  // Sealing zeroes cached keys in place; a caller still holding one must not wrap under (or try
  // to unwrap with) 32 publicly known zero bytes. A CSPRNG key is all zero with probability 2^-256.
  if (key.every((b) => b === 0)) {
    throw new LockboxError("FAILED_PRECONDITION", "sealed (the wrapping key has been zeroed)");
  }
}
