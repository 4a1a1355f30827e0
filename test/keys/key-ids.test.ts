/**
 * Key ids carry their placement (issue 10 item 2, DESIGN §4): an RFC 9562 version-8 UUID whose
 * first 32 bits are the top 32 bits of H(cluster salt, project, scope), so a key's partition
 * follows from its id, and a scope's keys, clones and rekeyed clones share one partition. Records
 * are stored keyed by partition then id (DESIGN §7).
 */
import { randomUUID } from "node:crypto";
import test from "ava";
import { keyIdPlacement, partitionOfKeyId } from "../../cluster/ring/key-id.js";
import { partitionOf } from "../../cluster/ring/partition.js";
import { scopeHash32, scopePartition } from "../../cluster/ring/placement.js";
import { openEnvelope, sealEnvelope } from "../../src/crypto/envelope.js";
import { nodeRandomSource } from "../../src/crypto/random-source.js";
import type { KeyRecord } from "../../src/keys/key-model.js";
import { KEK_GENERATION, ProjectKeks } from "../../src/keys/project-keks.js";
import { encodeKeyRecord, materialBinding, parseKeyRecord } from "../../src/keys/record-codec.js";
import { recordKey } from "../../src/store/record-key.js";
import { admin, openFixture } from "./key-service-fixture.js";

const V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("key ids are version-8 UUIDs carrying their scope's placement hash", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  for (const [project, scope] of [
    ["tenant-a", "vol-1"],
    ["tenant-a", "vol-2"],
    ["tenant-b", "vol-1"],
  ] as const) {
    const k = await s.createKey(admin, { project, scope, name: "n", algorithm: "AES", bitLength: 256 });
    t.regex(k.id, V8);
    t.is(keyIdPlacement(k.id), scopeHash32(fx.clusterSalt, project, scope));
    t.is(partitionOfKeyId(fx.clusterSalt, k.id, 10), scopePartition(fx.clusterSalt, project, scope, 10));
  }
});

test("a key, its clones and its rekeyed clones share one partition, and their records sit under it", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const parent = await s.createKey(admin, {
    project: "tenant-a",
    scope: "vol-7",
    name: "root",
    algorithm: "AES",
    bitLength: 512,
  });
  const snap = await s.cloneKey(admin, { id: parent.id, name: "snap" });
  const rekeyed = await s.rekeyClone(admin, { id: snap.id, name: "clone" });
  const imported = await s.importKey(admin, {
    project: "tenant-a",
    scope: "vol-7",
    name: "imported",
    algorithm: "AES",
    material: new Uint8Array(32),
  });
  const partition = scopePartition(fx.clusterSalt, "tenant-a", "vol-7", 10);
  const ids = [parent.id, snap.id, rekeyed.id, imported.id];
  t.is(new Set(ids).size, 4);
  const stored = await fx.handle.store.sublevel("records").keys().all();
  for (const id of ids) {
    t.is(partitionOfKeyId(fx.clusterSalt, id, 10), partition);
    t.true(stored.includes(recordKey(partition, id, 10)), `record of ${id} under partition ${partition}`);
  }
  // The partition's records are one contiguous range.
  const prefix = recordKey(partition, ids[0]!, 10).split("/")[0]!;
  t.is(stored.filter((k) => k.startsWith(`${prefix}/`)).length, 4);
});

test("a key written before placement by scope (a version-4 id at the id's hashed partition) is still found, listed, cloned and deleted", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  // Make a record as the service did before: same fields, a version-4 id, filed at partitionOf(id).
  const model = await s.createKey(admin, {
    project: "old",
    scope: "vol-1",
    name: "legacy",
    algorithm: "AES",
    bitLength: 256,
  });
  const material = (await s.getKey(admin, model)).material;
  const stored = await fx.handle.store.get(
    "records",
    recordKey(partitionOfKeyId(fx.clusterSalt, model.id, 10), model.id, 10),
  );
  const record: KeyRecord = parseKeyRecord(stored!, model.id).unverified;
  const keys = await new ProjectKeks(fx.handle.store, fx.handle.barrier, nodeRandomSource).getExisting("old");
  const legacyId = randomUUID();
  t.is(keyIdPlacement(legacyId), undefined, "a version-4 id carries no placement");
  const legacy: KeyRecord = { ...record, id: legacyId };
  legacy.wrappedMaterial = sealEnvelope(
    keys.kek,
    KEK_GENERATION,
    material,
    materialBinding(legacy),
    nodeRandomSource,
  );
  t.deepEqual(openEnvelope(keys.kek, legacy.wrappedMaterial, materialBinding(legacy)), material);
  await fx.handle.store.write([
    {
      type: "put",
      sublevel: "records",
      key: recordKey(partitionOf(fx.clusterSalt, legacyId, 10), legacyId, 10),
      value: encodeKeyRecord(legacy, keys.recordMacKey),
    },
    { type: "put", sublevel: "meta", key: `idx/old/vol-1/${legacyId}`, value: new Uint8Array(0) },
  ]);
  const reopened = (await fx.reopen()).service;
  const got = await reopened.getKey(admin, { id: legacyId });
  t.deepEqual(got.material, material);
  t.is(got.key.id, legacyId);
  t.true((await reopened.listKeys(admin, { project: "old" })).keys.some((k) => k.id === legacyId));
  // Its clone is a new key: a version-8 id in its scope's partition.
  const clone = await reopened.cloneKey(admin, { id: legacyId });
  t.is(keyIdPlacement(clone.id), scopeHash32(fx.clusterSalt, "old", "vol-1"));
  t.is((await reopened.deleteKey(admin, { id: legacyId })).state, "destroyed");
});
