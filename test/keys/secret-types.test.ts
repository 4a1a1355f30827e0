/**
 * Secret types (issue 11 item 4): symmetric AES keys of every supported length, and opaque and
 * passphrase payloads of bounded size stored as they are (Nova's vTPM passphrases, barbicanclient's
 * opaque secrets). Real LevelDB through the peer's composition root.
 */
import { randomBytes } from "node:crypto";
import test from "ava";
import { WRAPPED_MATERIAL_BYTES_MAX } from "../../cluster/replication/replicated-key.js";
import { ENVELOPE_HEADER_BYTES } from "../../src/crypto/envelope.js";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { SECRET_PAYLOAD_BYTES_MAX } from "../../src/keys/validation.js";
import { admin, dumpDb, openFixture } from "./key-service-fixture.js";

const base = { project: "tenant-a", scope: "instance-1", name: "vtpm" };

test("createKey makes AES keys of 128, 192, 256 and 512 bits; importKey takes 16, 24, 32 and 64 bytes and keeps them exactly", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  for (const bitLength of [128, 192, 256, 512]) {
    const made = await s.createKey(admin, { ...base, algorithm: "AES", bitLength });
    t.like(made, { secretType: "symmetric", algorithm: "AES", bitLength });
    t.is((await s.getKey(admin, made)).material.length, bitLength / 8);
    const material = new Uint8Array(randomBytes(bitLength / 8));
    const imported = await s.importKey(admin, { ...base, algorithm: "AES", material: material.slice() });
    t.like(imported, { secretType: "symmetric", algorithm: "AES", bitLength });
    t.deepEqual((await s.getKey(admin, imported)).material, material);
    // A 512-bit key's clone and rekeyed clone keep 512 bits (XTS volumes and their clones).
    t.is((await s.getKey(admin, await s.rekeyClone(admin, made))).material.length, bitLength / 8);
  }
});

test("opaque and passphrase secrets round-trip their exact bytes with their declared algorithm and bit length", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const passphrase = new Uint8Array(
    Buffer.from("g7P3Lq-9vZ0aXkE2mT8wYc1RdN4sHbUf_j6oQiVnKpA5lGzWxMe", "utf8"),
  );
  const p = await s.importKey(admin, {
    ...base,
    secretType: "passphrase",
    algorithm: "",
    material: passphrase,
  });
  t.like(p, { secretType: "passphrase", algorithm: "", bitLength: 0, state: "active" });
  t.deepEqual((await s.getKey(admin, p)).material, passphrase);
  // barbicanclient's `secret store` defaults: opaque, algorithm aes, bit length 256, any payload.
  const odd = new Uint8Array(randomBytes(37));
  const o = await s.importKey(admin, {
    ...base,
    secretType: "opaque",
    algorithm: "AES",
    bitLength: 256,
    material: odd,
  });
  t.like(o, { secretType: "opaque", algorithm: "AES", bitLength: 256 });
  t.deepEqual((await s.getKey(admin, o)).material, odd);
  const largest = new Uint8Array(randomBytes(SECRET_PAYLOAD_BYTES_MAX));
  const big = await s.importKey(admin, { ...base, secretType: "opaque", algorithm: "", material: largest });
  t.deepEqual((await s.getKey(admin, big)).material, largest);
  // The listing and metadata say what each one is.
  const listed = (await s.listKeys(admin, { project: base.project })).keys;
  t.deepEqual(listed.map((k) => k.secretType).sort(), ["opaque", "opaque", "passphrase"]);
  t.deepEqual(await s.getKeyMetadata(admin, p), p);
});

test("the largest opaque payload's envelope fits what a replicated record may carry", (t) => {
  t.true(SECRET_PAYLOAD_BYTES_MAX + ENVELOPE_HEADER_BYTES + 16 <= WRAPPED_MATERIAL_BYTES_MAX);
});

test("a clone of a passphrase keeps its type and bytes; a rekeyed clone of it is FAILED_PRECONDITION and makes nothing", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const material = new Uint8Array(Buffer.from("correct horse battery staple"));
  const p = await s.importKey(admin, { ...base, secretType: "passphrase", algorithm: "", material });
  const clone = await s.cloneKey(admin, { id: p.id, name: "copy" });
  t.like(clone, { secretType: "passphrase", algorithm: "", bitLength: 0, parentId: p.id, name: "copy" });
  t.deepEqual((await s.getKey(admin, clone)).material, material);
  const before = await dumpDb(handle.store);
  const e = await t.throwsAsync<LockboxError>(s.rekeyClone(admin, p));
  t.true(isLockboxError(e, "FAILED_PRECONDITION"));
  t.regex(e!.message, /passphrase secret: only symmetric keys can be rekeyed/);
  t.deepEqual(await dumpDb(handle.store), before);
});

test("bad secret types, payload sizes and declared lengths are INVALID_ARGUMENT naming the field; nothing is written", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const before = await dumpDb(handle.store);
  const cases: [string, Record<string, unknown>, string][] = [
    ["unknown type", { secretType: "private", algorithm: "", material: new Uint8Array(8) }, "secret_type"],
    ["empty opaque", { secretType: "opaque", algorithm: "", material: new Uint8Array(0) }, "material"],
    [
      "opaque over the bound",
      { secretType: "opaque", algorithm: "", material: new Uint8Array(SECRET_PAYLOAD_BYTES_MAX + 1) },
      "material",
    ],
    [
      "passphrase with algorithm DES",
      { secretType: "passphrase", algorithm: "DES", material: new Uint8Array(8) },
      "algorithm",
    ],
    [
      "symmetric without algorithm",
      { secretType: "symmetric", algorithm: "", material: new Uint8Array(32) },
      "algorithm",
    ],
    ["symmetric of 20 bytes", { algorithm: "AES", material: new Uint8Array(20) }, "material"],
    [
      "symmetric with a wrong declared length",
      { algorithm: "AES", bitLength: 128, material: new Uint8Array(32) },
      "bit_length",
    ],
    [
      "opaque declaring 65537 bits",
      { secretType: "opaque", algorithm: "", bitLength: 65537, material: new Uint8Array(8) },
      "bit_length",
    ],
    [
      "opaque declaring -1 bits",
      { secretType: "opaque", algorithm: "", bitLength: -1, material: new Uint8Array(8) },
      "bit_length",
    ],
  ];
  for (const [what, fields, field] of cases) {
    const e = await t.throwsAsync<LockboxError>(
      s.importKey(admin, { ...base, ...fields } as never),
      undefined,
      what,
    );
    t.true(isLockboxError(e, "INVALID_ARGUMENT"), what);
    t.is(e!.field, field, what);
  }
  t.deepEqual(await dumpDb(handle.store), before);
});
