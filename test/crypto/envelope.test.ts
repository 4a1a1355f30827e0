import { randomBytes } from "node:crypto";
import test from "ava";
import {
  ENVELOPE_HEADER_BYTES,
  envelopeEpoch,
  openEnvelope,
  sealEnvelope,
  type EnvelopeBinding,
} from "../../src/crypto/envelope.js";
import { nodeRandomSource } from "../../src/crypto/random-source.js";
import { isLockboxError } from "../../src/errors.js";

const key = new Uint8Array(randomBytes(32));
const binding: EnvelopeBinding = {
  kind: "key-material",
  id: "6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
  attributes: { project: "tenant-a", algorithm: "AES", bitLength: 256 },
};
const plaintext = new Uint8Array(randomBytes(32));

test("seal then open returns the plaintext", (t) => {
  const blob = sealEnvelope(key, 7, plaintext, binding, nodeRandomSource);
  t.deepEqual(openEnvelope(key, blob, binding), plaintext);
});

test("header is [format 2][epoch u32 BE][12-byte nonce], then ciphertext and 16-byte tag", (t) => {
  const blob = sealEnvelope(key, 0x01020304, plaintext, binding, nodeRandomSource);
  t.is(blob[0], 2);
  t.deepEqual([...blob.subarray(1, 5)], [1, 2, 3, 4]);
  t.is(envelopeEpoch(blob), 0x01020304);
  t.is(blob.length, ENVELOPE_HEADER_BYTES + plaintext.length + 16);
  t.is(Buffer.from(blob).indexOf(Buffer.from(plaintext)), -1);
});

test("two seals of the same plaintext use different nonces", (t) => {
  const a = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  const b = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  t.notDeepEqual(a.subarray(5, 17), b.subarray(5, 17));
  t.notDeepEqual(a, b);
});

test("a blob opened against any other binding fails with DATA_LOSS (AAD binding)", (t) => {
  const blob = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  const others: EnvelopeBinding[] = [
    { ...binding, kind: "project-kek" },
    { ...binding, id: "6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e50" },
    { ...binding, attributes: { ...binding.attributes, project: "tenant-b" } },
    { ...binding, attributes: { ...binding.attributes, algorithm: "AES-X" } },
    { ...binding, attributes: { ...binding.attributes, bitLength: 128 } },
    // The same value as a string, an extra attribute, a missing one: all distinct bindings.
    { ...binding, attributes: { ...binding.attributes, bitLength: "256" } },
    { ...binding, attributes: { ...binding.attributes, state: "active" } },
    { ...binding, attributes: { project: "tenant-a", algorithm: "AES" } },
    // Length prefixes keep field boundaries: moving a character across fields must not collide.
    { ...binding, id: `${binding.id}t`, attributes: { ...binding.attributes, project: "enant-a" } },
  ];
  for (const other of others) {
    const e = t.throws(() => openEnvelope(key, blob, other));
    t.true(isLockboxError(e, "DATA_LOSS"), JSON.stringify(other));
  }
});

test("any flipped bit, truncation, or wrong key fails with DATA_LOSS", (t) => {
  const blob = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  for (let i = 0; i < blob.length; i++) {
    const bad = new Uint8Array(blob);
    bad[i]! ^= 0x01;
    t.true(
      isLockboxError(
        t.throws(() => openEnvelope(key, bad, binding)),
        "DATA_LOSS",
      ),
      `byte ${i}`,
    );
  }
  t.true(
    isLockboxError(
      t.throws(() => openEnvelope(key, blob.subarray(0, 20), binding)),
      "DATA_LOSS",
    ),
  );
  const wrongKey = new Uint8Array(randomBytes(32));
  t.true(
    isLockboxError(
      t.throws(() => openEnvelope(wrongKey, blob, binding)),
      "DATA_LOSS",
    ),
  );
});

test("wrapping keys must be 32 bytes", (t) => {
  t.throws(() => sealEnvelope(new Uint8Array(16), 1, plaintext, binding, nodeRandomSource), {
    instanceOf: RangeError,
  });
});

test("a zeroed wrapping key (what sealing leaves in a cached key) is refused for seal and open", (t) => {
  const blob = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  const zeroed = new Uint8Array(32);
  for (const attempt of [
    () => sealEnvelope(zeroed, 1, plaintext, binding, nodeRandomSource),
    () => openEnvelope(zeroed, blob, binding),
  ]) {
    const e = t.throws(attempt);
    t.true(isLockboxError(e, "FAILED_PRECONDITION"), String(e));
  }
});
