import { createCipheriv, randomBytes } from "node:crypto";
import fc from "fast-check";
import test from "ava";
import { encodeBinding } from "../../src/crypto/binding.js";
import {
  ENVELOPE_HEADER_BYTES,
  envelopeEpoch,
  openEnvelope,
  sealEnvelope,
  type EnvelopeBinding,
} from "../../src/crypto/envelope.js";
import { nodeRandomSource, type RandomSource } from "../../src/crypto/random-source.js";
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

/** A RandomSource that returns `nonce` (as a fresh copy) for every request. */
const fixedNonce = (nonce: Uint8Array): RandomSource => ({ bytes: (n) => nonce.slice(0, n) });

/** The format-2 envelope as first written (header, then AES-256-GCM with header || binding as AAD). */
function referenceSeal(
  k: Uint8Array,
  epoch: number,
  pt: Uint8Array,
  b: EnvelopeBinding,
  nonce: Uint8Array,
): string {
  const header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  header.writeUInt8(2, 0);
  header.writeUInt32BE(epoch, 1);
  header.set(nonce, 5);
  const cipher = createCipheriv("aes-256-gcm", k, nonce, { authTagLength: 16 });
  cipher.setAAD(Buffer.concat([header, encodeBinding(b)]));
  return Buffer.concat([header, cipher.update(pt), cipher.final(), cipher.getAuthTag()]).toString("hex");
}

test("sealEnvelope produces the known format-2 bytes for a fixed key, nonce and binding", (t) => {
  const k = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i);
  const pt = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);
  // Produced by the original implementation: stored blobs depend on these bytes.
  t.is(
    Buffer.from(sealEnvelope(k, 0x01020304, pt, binding, fixedNonce(nonce))).toString("hex"),
    "0201020304a0a1a2a3a4a5a6a7a8a9aaabf9907f25b9f01c433747e820bdc86ecb0786e24a0c3d36d37f028fa60e13866a51fe42acec4ec1a1352eb96e7b4c7910",
  );
  t.is(
    Buffer.from(sealEnvelope(k, 0, new Uint8Array(0), binding, fixedNonce(nonce))).toString("hex"),
    "0200000000a0a1a2a3a4a5a6a7a8a9aaabd617a5fcf252c6db279c181585fbec7e",
  );
});

test("sealEnvelope matches the original construction, and openEnvelope opens it, on generated inputs", (t) => {
  const attributes = fc.dictionary(
    fc.string({ maxLength: 12 }),
    fc.oneof(fc.string({ maxLength: 30 }), fc.maxSafeInteger(), fc.boolean()),
    { maxKeys: 8 },
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((k) => k.some((x) => x !== 0)),
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      fc.nat(0xffffffff),
      fc.uint8Array({ maxLength: 100 }),
      fc.record({ kind: fc.string({ maxLength: 20 }), id: fc.string({ maxLength: 40 }), attributes }),
      (k, nonce, epoch, pt, b) => {
        const blob = sealEnvelope(k, epoch, pt, b, fixedNonce(nonce));
        if (Buffer.from(blob).toString("hex") !== referenceSeal(k, epoch, pt, b, nonce)) return false;
        return Buffer.from(openEnvelope(k, blob, b)).equals(Buffer.from(pt));
      },
    ),
    { numRuns: 1000 },
  );
  t.pass();
});

test("opened plaintext has an ArrayBuffer of its own (zeroize reaches the only copy)", (t) => {
  const blob = sealEnvelope(key, 1, plaintext, binding, nodeRandomSource);
  const a = openEnvelope(key, blob, binding);
  const b = openEnvelope(key, blob, binding);
  t.is(a.byteOffset, 0);
  t.is(a.buffer.byteLength, plaintext.length);
  a.fill(0);
  t.deepEqual(b, plaintext);
});
