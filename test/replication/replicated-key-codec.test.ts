import { createHash } from "node:crypto";
import test from "ava";
import fc from "fast-check";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  replicatedKeyVersion,
} from "../../cluster/replication/replicated-key-codec.js";
import { mergeKeys, type ReplicatedKey } from "../../cluster/replication/replicated-key.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";
import { CREATED, FIELDS, version } from "./key-versions.js";

function withChecksum(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 32);
  out.set(body);
  out.set(createHash("sha256").update(body).digest(), body.length);
  return out;
}

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof ReplicationError) return e.code;
    throw e;
  }
};

test("a record round-trips byte for byte, merged records included", (t) => {
  fc.assert(
    fc.property(version, version, (a, b) => {
      for (const k of [a, b, mergeKeys(a, b)]) {
        const bytes = encodeReplicatedKey(k);
        const back = decodeReplicatedKey(bytes);
        t.deepEqual(back, k);
        t.deepEqual(encodeReplicatedKey(back), bytes);
      }
    }),
    { numRuns: 200 },
  );
});

test("the version hash changes with every change to the record, and only then", (t) => {
  fc.assert(
    fc.property(version, version, (a, b) => {
      const va = replicatedKeyVersion(encodeReplicatedKey(a));
      const vb = replicatedKeyVersion(encodeReplicatedKey(b));
      t.is(Buffer.from(va).equals(vb), JSON.stringify(a) === JSON.stringify(b));
    }),
    { numRuns: 200 },
  );
});

test("any flipped bit or cut is refused as damage", (t) => {
  fc.assert(
    fc.property(version, fc.nat(), fc.integer({ min: 0, max: 7 }), (k, at, bit) => {
      const bytes = encodeReplicatedKey(k);
      const damaged = new Uint8Array(bytes);
      damaged[at % bytes.length]! ^= 1 << bit;
      t.is(
        codeOf(() => decodeReplicatedKey(damaged)),
        "INVALID_RECORD",
      );
      t.is(
        codeOf(() => decodeReplicatedKey(bytes.subarray(0, at % bytes.length))),
        "INVALID_RECORD",
      );
    }),
    { numRuns: 150 },
  );
});

test("forged bytes with a valid checksum decode to a valid record that re-encodes exactly, or are refused", (t) => {
  fc.assert(
    fc.property(
      version,
      fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 4,
      }),
      (k, edits) => {
        const body = new Uint8Array(encodeReplicatedKey(k).subarray(0, -32));
        for (const e of edits) body[e.at % body.length] = e.value;
        const forged = withChecksum(body);
        let decoded: ReplicatedKey;
        try {
          decoded = decodeReplicatedKey(forged);
        } catch (e) {
          t.true(e instanceof ReplicationError && e.code === "INVALID_RECORD", String(e));
          return;
        }
        t.deepEqual(encodeReplicatedKey(decoded), forged);
      },
    ),
    { numRuns: 400 },
  );
});

test("random bytes are refused with INVALID_RECORD", (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
      t.is(
        codeOf(() => decodeReplicatedKey(junk)),
        "INVALID_RECORD",
      );
      t.is(
        codeOf(() => decodeReplicatedKey(withChecksum(junk))),
        "INVALID_RECORD",
      );
    }),
    { numRuns: 300 },
  );
});

test("errors never carry the wrapped material", (t) => {
  const secret = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x42, 0x42, 0x42, 0x42]);
  const k: ReplicatedKey = {
    fields: { ...FIELDS },
    created: CREATED,
    wrappedMaterial: secret,
    state: { value: "active", stamp: CREATED },
    tombstone: null,
    grants: [],
    consumers: [],
  };
  const bytes = encodeReplicatedKey(k);
  const body = new Uint8Array(bytes.subarray(0, -32));
  body[body.length - 1] = 9; // an impossible consumer count
  const err = t.throws(() => decodeReplicatedKey(withChecksum(body)), { instanceOf: ReplicationError });
  t.regex(err!.message, /consumer/);
  for (const text of [err!.message, String(err!.stack)]) {
    t.false(/de ?ad ?be ?ef/i.test(text), "material as hex in an error");
    t.false(/222, ?173, ?190, ?239/.test(text), "material as numbers in an error");
    t.false(text.includes(Buffer.from(secret).toString("base64")), "material as base64 in an error");
  }
});
