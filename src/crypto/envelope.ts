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
import { withEncodedBinding, type Binding } from "./binding.js";
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
  // One output buffer: the header written in place, then the ciphertext and the tag copied after it.
  const out = Buffer.alloc(ENVELOPE_HEADER_BYTES + plaintext.length + TAG_BYTES);
  out[0] = ENVELOPE_FORMAT;
  out.writeUInt32BE(epoch, 1);
  out.set(nonce, 5);
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  setAad(cipher, out, binding);
  let at = ENVELOPE_HEADER_BYTES;
  at += cipher.update(plaintext).copy(out, at);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
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
  const nonce = buf.subarray(5, ENVELOPE_HEADER_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const ciphertext = buf.subarray(ENVELOPE_HEADER_BYTES, buf.length - TAG_BYTES);
  // GCM decrypts before it checks the tag: when the check fails (a blob moved onto another
  // record), `update`'s output can be another key's real plaintext, so it is zeroed on that path too.
  let unauthenticated: Buffer | undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
    setAad(decipher, buf, binding);
    decipher.setAuthTag(tag);
    unauthenticated = decipher.update(ciphertext);
    const last = decipher.final(); // empty for GCM; copied and wiped all the same
    // zeroize() must reach the only copy: the plaintext goes into an ArrayBuffer of its own, off
    // the V8 heap (a Buffer can be a slice of node's shared pool, and the GC may move a small
    // typed array's bytes), and node's intermediate plaintext buffers are wiped.
    const plaintext = new Uint8Array(new ArrayBuffer(unauthenticated.length + last.length));
    plaintext.set(unauthenticated, 0);
    plaintext.set(last, unauthenticated.length);
    unauthenticated.fill(0);
    last.fill(0);
    return plaintext;
  } catch (cause) {
    unauthenticated?.fill(0);
    throw new LockboxError("DATA_LOSS", "integrity check failed", undefined, { cause });
  }
}

/**
 * The AAD, the envelope's header (the first ENVELOPE_HEADER_BYTES of `blob`) followed by the
 * binding's encoding, handed to the cipher straight from the binding encoder's scratch buffer.
 */
function setAad(
  cipher: { setAAD(aad: Uint8Array): unknown },
  blob: Uint8Array,
  binding: EnvelopeBinding,
): void {
  withEncodedBinding(binding, ENVELOPE_HEADER_BYTES, (aad) => {
    for (let i = 0; i < ENVELOPE_HEADER_BYTES; i++) aad[i] = blob[i]!;
    cipher.setAAD(aad);
  });
}

function assertKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`wrapping key must be ${KEY_BYTES} bytes`);
  // Sealing zeroes cached keys in place; a caller still holding one must not wrap under (or try
  // to unwrap with) 32 publicly known zero bytes. A CSPRNG key is all zero with probability 2^-256.
  if (isAllZero(key)) {
    throw new LockboxError("FAILED_PRECONDITION", "sealed (the wrapping key has been zeroed)");
  }
}

function isAllZero(bytes: Uint8Array): boolean {
  let any = 0;
  for (let i = 0; i < bytes.length; i++) any |= bytes[i]!;
  return any === 0;
}
