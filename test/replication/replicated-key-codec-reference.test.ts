/**
 * The single-buffer codec against the codec it replaced (reference-key-codec.ts, kept verbatim):
 * records are on disk and on the wire, so for any record the new encoder must write exactly the
 * reference's bytes (or refuse it with the same error), and for any bytes the new decoder must
 * accept exactly what the reference accepts, with an equal record, and refuse the rest with the
 * same error. Generated records cover every format (1 to 3), ASCII and non-ASCII strings, strings
 * at and over the length bound, lone surrogates, large counts and times, and broken records.
 */
import { createHash } from "node:crypto";
import test from "ava";
import fc from "fast-check";
import type { HlcStamp } from "../../cluster/replication/hlc.js";
import { decodeReplicatedKey, encodeReplicatedKey } from "../../cluster/replication/replicated-key-codec.js";
import type { ReplicatedKey } from "../../cluster/replication/replicated-key.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";
import { referenceDecode, referenceEncode } from "./reference-key-codec.js";

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

function outcome<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof ReplicationError) return { ok: false, code: e.code, message: e.message };
    throw e;
  }
}

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
/** Strings as records carry them: ids and peers (ASCII), names in any script, up to the bound. */
const text = fc.oneof(
  { weight: 4, arbitrary: fc.uuid() },
  { weight: 3, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24, unit: "grapheme" }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8, unit: "binary" }) },
  { weight: 1, arbitrary: fc.constantFrom("x".repeat(1024), "é".repeat(512), "\ufeffbom", "€".repeat(341)) },
);
/** Strings no record may carry: not well-formed Unicode, or over 1024 bytes of UTF-8. */
const hostileText = fc.oneof(
  fc
    .string({ minLength: 1, maxLength: 6, unit: fc.oneof(fc.constant("a"), loneSurrogate) })
    .filter((s) => s !== "a".repeat(s.length)),
  fc.constantFrom("x".repeat(1025), "é".repeat(513), "€".repeat(342)),
);
const nonEmpty = text.filter((s) => s.length > 0);
/** Records the reference encodes (a few generated ones break an invariant, e.g. equal grant ids). */
const encodable = (k: ReplicatedKey): boolean => outcome(() => referenceEncode(k)).ok;
const time = fc.oneof(
  fc.integer({ min: 0, max: 2_000_000_000_000 }),
  fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
);
const stamp: fc.Arbitrary<HlcStamp> = fc.record({
  wallMs: time,
  logical: fc.oneof(fc.nat(3), fc.constant(0xffff_ffff)),
  peer: fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom("a", "peer-2", "7f3c") },
    { weight: 1, arbitrary: nonEmpty },
  ),
});

const record: fc.Arbitrary<ReplicatedKey> = fc
  .record({
    id: nonEmpty,
    project: text,
    scope: text,
    name: text,
    algorithm: fc.constantFrom("AES", "HMAC", ""),
    bitLength: fc.oneof(fc.constantFrom(1, 128, 256, 0xffff), fc.integer({ min: 1, max: 0xffff })),
    createdAtMs: time,
    parentId: fc.oneof(fc.constant(""), fc.uuid()),
    secretType: fc.option(fc.constantFrom("opaque", "passphrase"), { nil: undefined }),
    expiresAtMs: fc.option(time, { nil: undefined }),
    request: fc.option(fc.base64String({ minLength: 4, maxLength: 64 }), { nil: undefined, freq: 2 }),
    settled: fc.boolean(),
    created: stamp,
    material: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    bigMaterial: fc.constantFrom(0, 0, 0, 4096),
    state: fc.record({ value: fc.constantFrom("active" as const, "deactivated" as const), stamp }),
    tombstone: fc.option(stamp, { nil: null, freq: 4 }),
    grants: fc.uniqueArray(
      fc.record({
        id: nonEmpty,
        grantee: text,
        grantedBy: text,
        createdAtMs: time,
        expiresAtMs: time,
        revoked: fc.option(stamp, { nil: null }),
      }),
      { selector: (g) => g.id, maxLength: 4 },
    ),
    consumers: fc.uniqueArray(fc.record({ key: nonEmpty, present: fc.boolean(), stamp }), {
      selector: (c) => c.key,
      maxLength: 4,
    }),
  })
  .map((v) => {
    const k: ReplicatedKey = {
      fields: {
        id: v.id,
        project: v.project,
        scope: v.scope,
        name: v.name,
        algorithm: v.algorithm,
        bitLength: v.bitLength,
        createdAtMs: v.createdAtMs,
        parentId: v.parentId,
      },
      created: v.created,
      wrappedMaterial:
        v.tombstone !== null ? null : v.bigMaterial > 0 ? new Uint8Array(v.bigMaterial).fill(7) : v.material,
      state: v.state,
      tombstone: v.tombstone,
      grants: [...v.grants].sort((a, b) => (a.id < b.id ? -1 : 1)),
      consumers: [...v.consumers].sort((a, b) => (a.key < b.key ? -1 : 1)),
    };
    if (v.secretType !== undefined) k.fields.secretType = v.secretType;
    if (v.expiresAtMs !== undefined) k.fields.expiresAtMs = v.expiresAtMs;
    if (v.request !== undefined) {
      k.fields.request = v.request;
      k.settled = v.settled;
    }
    return k;
  });

/** Records the encoder must refuse, or (negative grant times) encodes to bytes no decoder accepts. */
const broken: fc.Arbitrary<ReplicatedKey> = fc
  .tuple(
    record,
    hostileText,
    fc.constantFrom(
      (k: ReplicatedKey, s: string) => (k.fields.name = s),
      (k: ReplicatedKey, s: string) => (k.fields.id = s),
      (k: ReplicatedKey, s: string) => (k.state.stamp.peer = s),
      (k: ReplicatedKey, s: string) => (k.grants[0]!.grantee = s),
      (k: ReplicatedKey) => (k.fields.bitLength = 0x10000),
      (k: ReplicatedKey) => (k.fields.bitLength = 0),
      (k: ReplicatedKey) => (k.fields.id = ""),
      (k: ReplicatedKey) => (k.created.logical = -1),
      (k: ReplicatedKey) => (k.created.peer = "€".repeat(43)),
      (k: ReplicatedKey) => (k.state.stamp.wallMs = 2 ** 53),
      (k: ReplicatedKey) => k.grants.push({ ...k.grants[0]!, id: "" }),
      (k: ReplicatedKey) => (k.grants = k.grants.map((g) => ({ ...g, createdAtMs: -1 }))),
      (k: ReplicatedKey) => (k.fields.secretType = "rsa"),
      (k: ReplicatedKey) => (k.settled = true),
    ),
  )
  .map(([k, s, breakIt]) => {
    if (k.grants.length === 0)
      k.grants.push({ id: "g", grantee: "n", grantedBy: "a", createdAtMs: 1, expiresAtMs: 2, revoked: null });
    breakIt(k, s);
    return k;
  });

function withChecksum(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 32);
  out.set(body);
  out.set(createHash("sha256").update(body).digest(), body.length);
  return out;
}

test("the encoder writes exactly the reference's bytes, or refuses with the reference's error", (t) => {
  let encoded = 0;
  fc.assert(
    fc.property(fc.oneof({ weight: 4, arbitrary: record }, { weight: 1, arbitrary: broken }), (k) => {
      const expected = outcome(() => referenceEncode(k));
      const actual = outcome(() => encodeReplicatedKey(k));
      t.deepEqual(actual, expected);
      if (actual.ok) {
        encoded += 1;
        t.is(Object.getPrototypeOf(actual.value), Uint8Array.prototype);
      }
    }),
    { numRuns: 3000 },
  );
  t.true(encoded > 1000, `only ${encoded} records encoded: the generator makes too many bad ones`);
});

test("the decoder accepts exactly what the reference accepts, equal, and refuses the rest alike", (t) => {
  fc.assert(
    fc.property(
      record.filter(encodable),
      fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 }),
      fc.nat(),
      fc.boolean(),
      fc.option(fc.uint8Array({ minLength: 1, maxLength: 3 }), { nil: undefined, freq: 4 }),
      (k, edits, cut, asBuffer, trailing) => {
        const good = referenceEncode(k);
        // Forged (edited or trailed, checksum recomputed), then possibly cut, as a Buffer or a view.
        let body = new Uint8Array(good.subarray(0, -32));
        for (const e of edits) body[e.at % body.length] = e.value;
        if (trailing !== undefined) body = new Uint8Array([...body, ...trailing]);
        let bytes = withChecksum(body);
        if (cut % 4 === 0) bytes = bytes.subarray(0, cut % bytes.length);
        if (asBuffer) bytes = Buffer.from(bytes);
        const expected = outcome(() => referenceDecode(bytes));
        const actual = outcome(() => decodeReplicatedKey(bytes));
        if (expected.ok && actual.ok) {
          t.deepEqual(actual.value, { ...expected.value, wrappedMaterial: actual.value.wrappedMaterial });
          t.deepEqual(
            actual.value.wrappedMaterial === null ? null : [...actual.value.wrappedMaterial],
            expected.value.wrappedMaterial === null ? null : [...expected.value.wrappedMaterial],
          );
        } else {
          t.deepEqual(actual, expected);
        }
      },
    ),
    { numRuns: 3000 },
  );
});

test("decoded material is a copy of its own, never a view of the bytes it came in", (t) => {
  fc.assert(
    fc.property(record.filter(encodable), fc.boolean(), (k, asBuffer) => {
      const encoded = encodeReplicatedKey(k);
      const bytes = asBuffer ? Buffer.from(encoded) : new Uint8Array(encoded);
      const back = decodeReplicatedKey(bytes);
      if (back.wrappedMaterial === null) return;
      t.is(Object.getPrototypeOf(back.wrappedMaterial), Uint8Array.prototype);
      const before = [...back.wrappedMaterial];
      bytes.fill(0);
      t.deepEqual([...back.wrappedMaterial], before);
    }),
    { numRuns: 300 },
  );
});

/** A plain active record, for the tests below that vary one part of it. */
const plainKey = (over: Partial<ReplicatedKey> = {}, name = "n"): ReplicatedKey => ({
  fields: {
    id: "00000007-0000-8000-8000-000000000001",
    project: "p",
    scope: "s",
    name,
    algorithm: "AES",
    bitLength: 256,
    createdAtMs: 1,
    parentId: "",
  },
  created: { wallMs: 1, logical: 0, peer: "a" },
  wrappedMaterial: new Uint8Array(65).fill(1),
  state: { value: "active", stamp: { wallMs: 1, logical: 0, peer: "a" } },
  tombstone: null,
  grants: [],
  consumers: [],
  ...over,
});

test("a record larger than the scratch buffer encodes like the reference, and so does a small one after it", (t) => {
  const huge = plainKey(
    {
      wrappedMaterial: new Uint8Array(4096).fill(3),
      grants: Array.from({ length: 1024 }, (_, i) => ({
        id: `g${String(i).padStart(5, "0")}`,
        grantee: "x".repeat(1000),
        grantedBy: "admin",
        createdAtMs: i,
        expiresAtMs: i + 1,
        revoked: null,
      })),
    },
    "é".repeat(500),
  );
  const bytes = encodeReplicatedKey(huge);
  t.true(bytes.length > 1_000_000);
  t.deepEqual(bytes, referenceEncode(huge));
  t.deepEqual(decodeReplicatedKey(bytes).grants.length, 1024);
  const small = { ...huge, grants: huge.grants.slice(0, 1) };
  t.deepEqual(encodeReplicatedKey(small), referenceEncode(small));
});

test("every byte above 0x7f in an ASCII string is judged as UTF-8, as the reference judges it", (t) => {
  const k = plainKey();
  const body = encodeReplicatedKey(k).subarray(0, -32);
  const idAt = 5 + 2; // magic, format, then the id's length
  let refused = 0;
  for (let byte = 0x80; byte <= 0xff; byte++) {
    for (const at of [idAt, idAt + 17, idAt + 35]) {
      const forged = new Uint8Array(body);
      forged[at] = byte;
      const bytes = withChecksum(forged);
      const expected = outcome(() => referenceDecode(bytes));
      t.deepEqual(
        outcome(() => decodeReplicatedKey(bytes)),
        expected,
      );
      if (!expected.ok) refused += 1;
    }
  }
  t.is(refused, 128 * 3, "a lone byte above 0x7f is never well-formed UTF-8");
});

test("with materialView the decoded record is the same, its material a plain view of the bytes", (t) => {
  fc.assert(
    fc.property(record.filter(encodable), fc.boolean(), (k, asBuffer) => {
      const encoded = encodeReplicatedKey(k);
      const bytes = asBuffer ? Buffer.from(encoded) : new Uint8Array(encoded);
      const viewed = decodeReplicatedKey(bytes, { materialView: true });
      const copied = decodeReplicatedKey(bytes);
      t.deepEqual(
        { ...viewed, wrappedMaterial: viewed.wrappedMaterial && [...viewed.wrappedMaterial] },
        { ...copied, wrappedMaterial: copied.wrappedMaterial && [...copied.wrappedMaterial] },
      );
      if (viewed.wrappedMaterial === null) return;
      t.is(Object.getPrototypeOf(viewed.wrappedMaterial), Uint8Array.prototype);
      t.is(viewed.wrappedMaterial.buffer, bytes.buffer);
    }),
    { numRuns: 200 },
  );
});
