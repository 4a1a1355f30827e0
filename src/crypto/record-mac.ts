/**
 * Authentication of stored records that are not encrypted (key metadata, tombstones, grants):
 * HMAC-SHA256 over the record's canonical binding (binding.ts), under a key derived from the
 * project KEK. Every field a client relies on is in the binding, so a flipped byte on disk makes
 * the record fail here (DATA_LOSS) instead of being served with a changed field; and a record's
 * tag only verifies under its own project's key, so crypto-shredding a project's KEK also leaves
 * its records unverifiable.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { LockboxError } from "../errors.js";
import { withEncodedBinding, type Binding } from "./binding.js";

export const RECORD_MAC_BYTES = 32;
const KEY_BYTES = 32;

/** The record-MAC key of a project, derived from its KEK (HKDF-SHA256, info names the project). */
export function deriveRecordMacKey(kek: Uint8Array, project: string): Uint8Array {
  assertKey(kek);
  return new Uint8Array(
    hkdfSync("sha256", kek, new Uint8Array(0), `lockbox/v1/record-mac/${project}`, KEY_BYTES),
  );
}

export function recordMac(key: Uint8Array, binding: Binding): Uint8Array {
  assertKey(key);
  // The binding goes to the HMAC straight from the encoder's scratch; the digest is a Buffer of
  // its own (not a slice of node's pool), so the result can be a view of it.
  const tag = withEncodedBinding(binding, 0, (bytes) => createHmac("sha256", key).update(bytes).digest());
  return new Uint8Array(tag.buffer, tag.byteOffset, tag.length);
}

/** Constant-time check of `tag` against the binding's MAC. */
export function recordMacMatches(key: Uint8Array, binding: Binding, tag: Uint8Array): boolean {
  const expected = recordMac(key, binding);
  return tag.length === expected.length && timingSafeEqual(expected, tag);
}

function assertKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`record MAC key must be ${KEY_BYTES} bytes`);
  // Sealing zeroes cached keys in place: never sign with (or trust) 32 publicly known zero bytes.
  let any = 0;
  for (let i = 0; i < key.length; i++) any |= key[i]!;
  if (any === 0) {
    throw new LockboxError("FAILED_PRECONDITION", "sealed (the record key has been zeroed)");
  }
}
