import test from "ava";
import fc from "fast-check";
import {
  mergeAll,
  mergeKeys,
  validateKey,
  type ReplicatedKey,
} from "../../cluster/replication/replicated-key.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";
import { CREATED, FIELDS, GRANT_TERMS, MATERIAL, stamp, version } from "./key-versions.js";

const RUNS = { numRuns: 500 };

test("merge is commutative", (t) => {
  fc.assert(
    fc.property(version, version, (a, b) => {
      t.deepEqual(mergeKeys(a, b), mergeKeys(b, a));
    }),
    RUNS,
  );
});

test("merge is associative", (t) => {
  fc.assert(
    fc.property(version, version, version, (a, b, c) => {
      t.deepEqual(mergeKeys(mergeKeys(a, b), c), mergeKeys(a, mergeKeys(b, c)));
    }),
    RUNS,
  );
});

test("merge is idempotent, and merging a version already merged in changes nothing", (t) => {
  fc.assert(
    fc.property(version, version, (a, b) => {
      t.deepEqual(mergeKeys(a, a), a);
      const ab = mergeKeys(a, b);
      t.deepEqual(mergeKeys(ab, a), ab);
      t.deepEqual(mergeKeys(ab, b), ab);
      validateKey(ab);
    }),
    RUNS,
  );
});

test("a tombstone always wins: once any version is destroyed, every merge is destroyed and holds no material", (t) => {
  fc.assert(
    fc.property(version, stamp, fc.array(version, { maxLength: 5 }), fc.nat(), (live, at, others, where) => {
      const destroyed: ReplicatedKey = { ...live, tombstone: at, wrappedMaterial: null };
      const all = [...others];
      all.splice(where % (all.length + 1), 0, destroyed);
      const merged = mergeAll(all);
      t.not(merged.tombstone, null);
      t.is(merged.wrappedMaterial, null);
      // Even against a version whose state was written later than the destroy.
      const later: ReplicatedKey = {
        ...live,
        state: { value: "active", stamp: { wallMs: 99, logical: 0, peer: "z" } },
      };
      const m2 = mergeKeys(destroyed, later.tombstone === null ? later : { ...later, wrappedMaterial: null });
      t.not(m2.tombstone, null);
      t.is(m2.wrappedMaterial, null);
    }),
    RUNS,
  );
});

test("replicas that saw the same versions in any order and any number of times agree", (t) => {
  fc.assert(
    fc.property(fc.array(version, { minLength: 1, maxLength: 6 }), fc.integer(), (versions, seed) => {
      const shuffled = [...versions, ...versions.slice(0, 2)];
      let s = seed;
      for (let i = shuffled.length - 1; i > 0; i--) {
        s = (Math.imul(s, 1103515245) + 12345) | 0;
        const j = Math.abs(s) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      t.deepEqual(mergeAll(shuffled), mergeAll(versions));
    }),
    RUNS,
  );
});

test("each field follows its rule: last writer wins for state, earliest revocation, latest consumer write", (t) => {
  const base: ReplicatedKey = {
    fields: { ...FIELDS },
    created: CREATED,
    wrappedMaterial: MATERIAL,
    state: { value: "active", stamp: { wallMs: 5, logical: 0, peer: "a" } },
    tombstone: null,
    grants: [{ id: "g1", ...GRANT_TERMS.g1, revoked: { wallMs: 9, logical: 0, peer: "b" } }],
    consumers: [{ key: "c1", present: true, stamp: { wallMs: 3, logical: 0, peer: "a" } }],
  };
  const other: ReplicatedKey = {
    ...base,
    state: { value: "deactivated", stamp: { wallMs: 5, logical: 0, peer: "b" } },
    grants: [
      { id: "g1", ...GRANT_TERMS.g1, revoked: { wallMs: 7, logical: 0, peer: "c" } },
      { id: "g2", ...GRANT_TERMS.g2, revoked: null },
    ],
    consumers: [
      { key: "c1", present: false, stamp: { wallMs: 3, logical: 1, peer: "a" } },
      { key: "c2", present: true, stamp: { wallMs: 1, logical: 0, peer: "c" } },
    ],
  };
  const m = mergeKeys(base, other);
  t.deepEqual(m.state, other.state, "same wall time: the tie goes to the higher peer id");
  t.deepEqual(m.grants[0]!.revoked, { wallMs: 7, logical: 0, peer: "c" });
  t.is(m.grants[1]!.revoked, null);
  t.false(m.consumers[0]!.present);
  t.true(m.consumers[1]!.present);
  t.not(m.wrappedMaterial, MATERIAL, "the merge owns its bytes");
});

test("versions that disagree on anything immutable are refused with CONFLICT in either order", (t) => {
  const a: ReplicatedKey = {
    fields: { ...FIELDS },
    created: CREATED,
    wrappedMaterial: MATERIAL,
    state: { value: "active", stamp: CREATED },
    tombstone: null,
    grants: [{ id: "g1", ...GRANT_TERMS.g1, revoked: null }],
    consumers: [],
  };
  const variants: ReplicatedKey[] = [
    { ...a, wrappedMaterial: new Uint8Array([9, 9, 9]) },
    { ...a, fields: { ...FIELDS, name: "renamed" } },
    { ...a, fields: { ...FIELDS, id: "00000007-0000-8000-8000-000000000002" } },
    { ...a, created: { wallMs: 0, logical: 0, peer: "b" } },
    { ...a, grants: [{ id: "g1", ...GRANT_TERMS.g1, grantee: "mallory", revoked: null }] },
  ];
  for (const b of variants) {
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const err = t.throws(() => mergeKeys(x, y), { instanceOf: ReplicationError });
      t.is(err?.code, "CONFLICT");
      t.false(err!.message.includes("9,9,9"), "no material in the message");
    }
  }
});

test("records breaking their invariants are refused with INVALID_RECORD", (t) => {
  const a: ReplicatedKey = {
    fields: { ...FIELDS },
    created: CREATED,
    wrappedMaterial: MATERIAL,
    state: { value: "active", stamp: CREATED },
    tombstone: null,
    grants: [],
    consumers: [],
  };
  const broken: ReplicatedKey[] = [
    { ...a, tombstone: CREATED },
    { ...a, wrappedMaterial: null },
    { ...a, wrappedMaterial: new Uint8Array(0) },
    { ...a, state: { value: "paused" as "active", stamp: CREATED } },
    {
      ...a,
      grants: [
        { id: "g2", ...GRANT_TERMS.g2, revoked: null },
        { id: "g1", ...GRANT_TERMS.g1, revoked: null },
      ],
    },
    {
      ...a,
      consumers: [
        { key: "c1", present: true, stamp: CREATED },
        { key: "c1", present: false, stamp: CREATED },
      ],
    },
    { ...a, created: { wallMs: -1, logical: 0, peer: "a" } },
    { ...a, fields: { ...FIELDS, bitLength: 0 } },
  ];
  for (const b of broken) {
    const err = t.throws(() => mergeKeys(a, b), { instanceOf: ReplicationError });
    t.is(err?.code, "INVALID_RECORD", err?.message);
  }
});
