/**
 * The replicated record's secret type and expiration (codec format 2): they round-trip, a record
 * without them keeps format 1 byte for byte, a format-2 record carrying neither is refused (one
 * encoding per record), an unknown secret type is refused, and two versions that disagree on either
 * do not merge (they are immutable, like the material they are bound to).
 */
import test from "ava";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  mergeKeys,
  ReplicationError,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { createHash } from "node:crypto";

const stamp = { wallMs: 1_000, logical: 0, peer: "a" };
const base: ReplicatedKey = {
  fields: {
    id: "k1",
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
    createdAtMs: 1_000,
    parentId: "",
  },
  created: stamp,
  wrappedMaterial: new Uint8Array([1, 2, 3]),
  state: { value: "active", stamp },
  tombstone: null,
  grants: [],
  consumers: [],
};

test("secret type and expiration round-trip in format 2; without them the record stays format 1", (t) => {
  const plain = encodeReplicatedKey(base);
  t.is(plain[4], 1);
  const extended: ReplicatedKey = {
    ...base,
    fields: { ...base.fields, secretType: "passphrase", algorithm: "", bitLength: 0, expiresAtMs: 9_000 },
  };
  const bytes = encodeReplicatedKey(extended);
  t.is(bytes[4], 2);
  const back = decodeReplicatedKey(bytes);
  t.is(back.fields.secretType, "passphrase");
  t.is(back.fields.expiresAtMs, 9_000);
  t.deepEqual(encodeReplicatedKey(back), bytes);
  const onlyExpiry = decodeReplicatedKey(
    encodeReplicatedKey({ ...base, fields: { ...base.fields, expiresAtMs: 5 } }),
  );
  t.is(onlyExpiry.fields.secretType, undefined);
  t.is(onlyExpiry.fields.expiresAtMs, 5);
});

test("a format-2 record with neither field, or an unknown secret type, is refused", (t) => {
  const plain = encodeReplicatedKey(base);
  // Rebuild the body as format 2 with an empty secret type and no expiry, with a valid checksum.
  const body = plain.subarray(0, plain.length - 32);
  const parentEnd = body.indexOf(0, 5); // not used: rebuild from the encoder instead
  t.true(parentEnd >= 0);
  const withType = encodeReplicatedKey({ ...base, fields: { ...base.fields, secretType: "opaque" } });
  const b = Buffer.from(withType.subarray(0, withType.length - 32));
  const at = b.indexOf(Buffer.from([0, 6, ...Buffer.from("opaque")]));
  const emptied = Buffer.concat([b.subarray(0, at), Buffer.from([0, 0]), b.subarray(at + 8)]);
  const forged = Buffer.concat([emptied, createHash("sha256").update(emptied).digest()]);
  t.throws(() => decodeReplicatedKey(new Uint8Array(forged)), {
    instanceOf: ReplicationError,
    message: /format 2 without/,
  });
  t.throws(() => encodeReplicatedKey({ ...base, fields: { ...base.fields, secretType: "symmetric" } }), {
    instanceOf: ReplicationError,
  });
});

test("versions that disagree on secret type or expiration do not merge", (t) => {
  const a: ReplicatedKey = { ...base, fields: { ...base.fields, expiresAtMs: 9_000 } };
  const b: ReplicatedKey = { ...base, fields: { ...base.fields, expiresAtMs: 9_001 } };
  t.throws(() => mergeKeys(a, b), { instanceOf: ReplicationError, message: /immutable fields differ/ });
  const c: ReplicatedKey = { ...base, fields: { ...base.fields, secretType: "opaque" } };
  t.throws(() => mergeKeys(base, c), { instanceOf: ReplicationError, message: /immutable fields differ/ });
  t.deepEqual(mergeKeys(a, a).fields, a.fields);
});
