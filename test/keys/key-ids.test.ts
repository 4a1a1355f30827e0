/**
 * Key ids carry their placement (issue 10 item 2, DESIGN §4): an RFC 9562 version-8 UUID whose
 * first 32 bits are the top 32 bits of H(cluster salt, project, scope), so a key's partition
 * follows from its id, and a scope's keys, clones and rekeyed clones share one partition. Records
 * are stored keyed by partition then id (DESIGN §7).
 */
import test from "ava";
import { keyIdPlacement, partitionOfKeyId } from "../../cluster/ring/key-id.js";
import { scopeHash32, scopePartition } from "../../cluster/ring/placement.js";
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
