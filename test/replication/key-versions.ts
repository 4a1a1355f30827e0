/** Arbitrary versions of one replicated key, shared by the merge and codec tests. */
import fc from "fast-check";
import type { HlcStamp } from "../../cluster/replication/hlc.js";
import type { ReplicatedKey } from "../../cluster/replication/replicated-key.js";

export const FIELDS = {
  id: "00000007-0000-8000-8000-000000000001",
  project: "tenant",
  scope: "volume-1",
  name: "vol-key",
  algorithm: "AES",
  bitLength: 256,
  createdAtMs: 1_700_000_000_000,
  parentId: "",
};
export const MATERIAL = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
export const CREATED: HlcStamp = { wallMs: 0, logical: 0, peer: "a" };
export const GRANT_TERMS = {
  g1: { grantee: "nova", grantedBy: "admin", createdAtMs: 1, expiresAtMs: 100 },
  g2: { grantee: "cinder", grantedBy: "admin", createdAtMs: 2, expiresAtMs: 200 },
  g3: { grantee: "glance", grantedBy: "ops", createdAtMs: 3, expiresAtMs: 300 },
};

// Small ranges on purpose: equal wall times, equal stamps and same-key entries happen often.
export const stamp = fc.record({
  wallMs: fc.integer({ min: 0, max: 4 }),
  logical: fc.integer({ min: 0, max: 2 }),
  peer: fc.constantFrom("a", "b", "c"),
});

/** One replica's version of the key: the same create, any history of later writes. */
export const version: fc.Arbitrary<ReplicatedKey> = fc
  .record({
    state: fc.record({ value: fc.constantFrom("active" as const, "deactivated" as const), stamp }),
    tombstone: fc.option(stamp, { nil: null, freq: 4 }),
    grants: fc.subarray(["g1", "g2", "g3"] as const),
    revocations: fc.array(fc.option(stamp, { nil: null }), { minLength: 3, maxLength: 3 }),
    consumers: fc.subarray(["c1", "c2", "c3"]),
    consumerWrites: fc.array(fc.record({ present: fc.boolean(), stamp }), { minLength: 3, maxLength: 3 }),
  })
  .map((v) => ({
    fields: { ...FIELDS },
    created: { ...CREATED },
    wrappedMaterial: v.tombstone === null ? new Uint8Array(MATERIAL) : null,
    state: v.state,
    tombstone: v.tombstone,
    grants: v.grants.map((id, i) => ({ id, ...GRANT_TERMS[id], revoked: v.revocations[i]! })),
    consumers: v.consumers.map((key, i) => ({ key, ...v.consumerWrites[i]! })),
  }));
