import test from "ava";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  PartitionDigest,
} from "../../cluster/replication/index.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { BATCH_ITEMS_MAX } from "../../src/replication/peer-link.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { recordKey } from "../../src/store/record-key.js";
import { deleted, PART_POWER, RECLAIM_AGE_MS, TestCluster } from "./replication-cluster.js";

test("a put merges with the stored version: a tombstone wins and the material leaves the record", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const r = c.peer("a").replica;
  const k = c.newKey();
  const p = c.partitionOf(k);
  t.true((await r.put(p, encodeReplicatedKey(deleted(k, c.nowMs + 5)))).ok);
  t.true((await r.put(p, encodeReplicatedKey(k))).ok, "the older live version arrives late");
  const stored = decodeReplicatedKey((await c.peer("a").replicaStore.getRecord(p, k.fields.id))!);
  t.truthy(stored.tombstone);
  t.is(stored.wrappedMaterial, null);
});

test("an acknowledged put is on disk: it survives closing and reopening the LevelDB", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const k = c.newKey();
  t.true((await peer.replica.put(c.partitionOf(k), encodeReplicatedKey(k))).ok);
  await peer.store.close();
  const reopened = await openPeerStore(peer.dir);
  peer.store = reopened; // the cluster's teardown closes this one
  const bytes = await new LevelReplicaStore(reopened, PART_POWER).getRecord(c.partitionOf(k), k.fields.id);
  t.deepEqual(bytes === undefined ? undefined : new Uint8Array(bytes), encodeReplicatedKey(k));
});

test("concurrent puts of different keys share synced batches (group commit)", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const keys = Array.from({ length: 40 }, () => c.newKey("vol-gc"));
  const before = peer.store.commitMetrics();
  const results = await peer.replica.handle({
    from: "x",
    items: keys.map((k) => ({ kind: "put", partition: c.partitionOf(k), record: encodeReplicatedKey(k) })),
  });
  t.true(results.results.every((r) => r.ok));
  const after = peer.store.commitMetrics();
  t.log(`${after.writes - before.writes} writes in ${after.batches - before.batches} synced batches`);
  t.true(after.batches - before.batches < keys.length / 4);
});

test("a version whose immutable fields differ is refused with DATA_LOSS and the stored one is kept", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const r = c.peer("a").replica;
  const k = c.newKey();
  const p = c.partitionOf(k);
  await r.put(p, encodeReplicatedKey(k));
  const forged = { ...k, wrappedMaterial: new Uint8Array(32).fill(0xee) };
  const res = await r.put(p, encodeReplicatedKey(forged));
  t.false(res.ok);
  t.is(!res.ok && res.code, "DATA_LOSS");
  const stored = decodeReplicatedKey((await c.peer("a").replicaStore.getRecord(p, k.fields.id))!);
  t.deepEqual(new Uint8Array(stored.wrappedMaterial!), k.wrappedMaterial);
});

test("hostile items get failures and change nothing: wrong partition, damaged bytes, bad buckets, oversized batch", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const r = c.peer("a").replica;
  const k = c.newKey();
  const p = c.partitionOf(k);
  const good = encodeReplicatedKey(k);
  const flipped = new Uint8Array(good);
  flipped[40]! ^= 1;
  const reply = await r.handle({
    from: "x",
    items: [
      { kind: "put", partition: (p + 1) % 16, record: good },
      { kind: "put", partition: p, record: flipped },
      { kind: "put", partition: 99, record: good },
      { kind: "get", partition: p, id: "x".repeat(500) },
      { kind: "pull", partition: p, buckets: [1 << 20] },
      { kind: "nonsense", partition: p } as never,
    ],
  });
  t.deepEqual(
    reply.results.map((x) => (x.ok ? "ok" : x.code)),
    [
      "INVALID_ARGUMENT",
      "INVALID_ARGUMENT",
      "INVALID_ARGUMENT",
      "INVALID_ARGUMENT",
      "INVALID_ARGUMENT",
      "INVALID_ARGUMENT",
    ],
  );
  const big = await r.handle({
    from: "x",
    items: Array.from({ length: BATCH_ITEMS_MAX + 1 }, () => ({ kind: "digest", partition: p })),
  });
  t.true(big.results.every((x) => !x.ok && x.code === "INVALID_ARGUMENT"));
  t.deepEqual(await c.peer("a").replicaStore.partitions(), [], "nothing was written");
});

test("a record failing its checksum on disk quarantines its partition: refused there, other partitions served, kept across a restart", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const k = c.newKey("vol-x");
  let other = c.newKey("vol-y");
  while (c.partitionOf(other) === c.partitionOf(k)) other = c.newKey(`vol-${Math.random()}`);
  const p = c.partitionOf(k);
  await peer.replica.put(p, encodeReplicatedKey(k));
  await peer.replica.put(c.partitionOf(other), encodeReplicatedKey(other));
  // Rot one byte of the stored record (in the value LevelDB holds, so the file checks still pass).
  const damaged = encodeReplicatedKey(k);
  damaged[damaged.length - 40]! ^= 0x10;
  await peer.store.write([
    { type: "put", sublevel: "records", key: recordKey(p, k.fields.id, PART_POWER), value: damaged },
  ]);
  const got = await peer.replica.handle({
    from: "x",
    items: [{ kind: "get", partition: p, id: k.fields.id }],
  });
  t.like(got.results[0], { ok: false, code: "UNAVAILABLE" });
  t.true(peer.replica.isQuarantined(p));
  t.is(
    await peer.replicaStore.getRecord(p, k.fields.id),
    undefined,
    "the damaged record is gone, never served",
  );
  const served = await peer.replica.handle({
    from: "x",
    items: [{ kind: "get", partition: c.partitionOf(other), id: other.fields.id }],
  });
  t.like(served.results[0], { ok: true, kind: "get" });
  // A restart must not forget: the partition lost a record and stays refused until repaired.
  await peer.store.close();
  const reopened = await c.open("a", peer.dir);
  t.true(reopened.replica.isQuarantined(p));
  t.deepEqual(await reopened.replicaStore.quarantined(), [p]);
});

test("tombstones older than the reclaim age are deleted; younger ones stay", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const oldKey = c.newKey("vol-r");
  const newKey = c.newKey("vol-r");
  const p = c.partitionOf(oldKey);
  await peer.replica.put(p, encodeReplicatedKey(deleted(oldKey, c.nowMs - 10)));
  await peer.replica.put(p, encodeReplicatedKey(deleted(newKey, c.nowMs - 1)));
  await peer.replica.digest(p);
  c.nowMs += RECLAIM_AGE_MS - 5;
  t.is(await peer.replica.reclaimTombstones(p), 1);
  t.is(await peer.replicaStore.getRecord(p, oldKey.fields.id), undefined);
  t.truthy(await peer.replicaStore.getRecord(p, newKey.fields.id));
  const d = await peer.replica.digest(p);
  const fresh = new PartitionDigest(p, 4);
  for (const s of await peer.replicaStore.scanPartition(p, 100))
    fresh.add(s.id, s.value.slice(s.value.length - 32));
  t.true(d!.top().equals(fresh.top()), "the digest follows the reclaim");
});

test("a tombstone already past the reclaim age is not stored again (it deletes a live copy instead)", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const k = c.newKey("vol-r2");
  const p = c.partitionOf(k);
  await peer.replica.put(p, encodeReplicatedKey(k));
  t.true((await peer.replica.put(p, encodeReplicatedKey(deleted(k, c.nowMs - RECLAIM_AGE_MS - 1)))).ok);
  t.is(await peer.replicaStore.getRecord(p, k.fields.id), undefined);
});

test("a put's decoded record counts only on the local path: through handle, a batch carrying one is checked from its bytes", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const r = c.peer("a").replica;
  const k = c.newKey();
  const p = c.partitionOf(k);
  const damaged = encodeReplicatedKey(k);
  damaged[40]! ^= 1;
  // A frame that somehow carried a sound record beside damaged bytes: the bytes are what is judged.
  const reply = await r.handle({
    from: "b",
    items: [{ kind: "put", partition: p, record: damaged, decoded: k }],
  });
  t.like(reply.results[0], { ok: false, code: "INVALID_ARGUMENT" });
  t.is(await c.peer("a").replicaStore.getRecord(p, k.fields.id), undefined, "nothing was written");
});

test("local puts carrying their decoded record store exactly what puts from the network store", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const viaLocal = c.peer("a");
  const viaNetwork = c.peer("b");
  const k = c.newKey("vol-local");
  const p = c.partitionOf(k);
  // A create, a tombstone merged over it, and a create of a key new to the replica.
  const other = c.newKey("vol-local");
  const versions = [k, deleted(k, c.nowMs + 5), other];
  for (const v of versions) {
    const bytes = encodeReplicatedKey(v);
    const local = await viaLocal.replica.handleLocal({
      from: "a",
      items: [{ kind: "put", partition: c.partitionOf(v), record: bytes, decoded: v }],
    });
    const remote = await viaNetwork.replica.handle({
      from: "a",
      items: [{ kind: "put", partition: c.partitionOf(v), record: new Uint8Array(bytes) }],
    });
    t.deepEqual(local, remote);
  }
  for (const v of [k, other]) {
    const a = await viaLocal.replicaStore.getRecord(c.partitionOf(v), v.fields.id);
    const b = await viaNetwork.replicaStore.getRecord(c.partitionOf(v), v.fields.id);
    t.truthy(a);
    t.deepEqual(new Uint8Array(a!), new Uint8Array(b!));
  }
  t.truthy(decodeReplicatedKey((await viaLocal.replicaStore.getRecord(p, k.fields.id))!).tombstone);
});

test("a get through handleLocal carries the record it checked; through handle only the bytes", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const r = c.peer("a").replica;
  const k = c.newKey();
  const p = c.partitionOf(k);
  const bytes = encodeReplicatedKey(k);
  t.true((await r.put(p, bytes)).ok);
  const item = { kind: "get" as const, partition: p, id: k.fields.id };
  const local = (await r.handleLocal({ from: "a", items: [item] })).results[0]!;
  const remote = (await r.handle({ from: "b", items: [item] })).results[0]!;
  if (!remote.ok || remote.kind !== "get" || remote.record === null) return t.fail(JSON.stringify(remote));
  t.deepEqual(new Uint8Array(remote.record), bytes);
  t.false("decoded" in remote, "an answer that may go to the network carries bytes only");
  if (!local.ok || local.kind !== "get" || local.record === null) return t.fail(JSON.stringify(local));
  t.deepEqual(new Uint8Array(local.record), bytes);
  t.deepEqual(local.decoded, decodeReplicatedKey(bytes));
  // A key it does not hold: nothing to carry either way.
  const missing = { kind: "get" as const, partition: p, id: c.newKey().fields.id };
  const none = (await r.handleLocal({ from: "a", items: [missing] })).results[0]!;
  t.deepEqual(none, { ok: true, kind: "get", record: null });
});

test("a damaged record is not carried decoded on the local path: the partition is quarantined and the get refused", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const k = c.newKey();
  const p = c.partitionOf(k);
  const damaged = encodeReplicatedKey(k);
  damaged[40]! ^= 1;
  // Written under the replica's feet, as a failing disk would.
  await peer.replicaStore.write([{ type: "put-record", partition: p, id: k.fields.id, value: damaged }]);
  const got = (
    await peer.replica.handleLocal({ from: "a", items: [{ kind: "get", partition: p, id: k.fields.id }] })
  ).results[0]!;
  t.like(got, { ok: false, code: "UNAVAILABLE" });
  t.false("decoded" in got);
});

test("puts of one key in one batch merge one after another, in arrival order (no lost update)", async (t) => {
  const c = await TestCluster.start(t, ["a", "b", "c"]);
  const peer = c.peer("a");
  const k = c.newKey("vol-order");
  const p = c.partitionOf(k);
  // A live version, then its tombstone, then the live version again, all in one batch: each merge
  // sees the one before, so the tombstone stays (a lost update would bring the material back).
  const reply = await peer.replica.handle({
    from: "b",
    items: [k, deleted(k, c.nowMs + 5), k].map((v) => ({
      kind: "put" as const,
      partition: p,
      record: encodeReplicatedKey(v),
    })),
  });
  t.true(reply.results.every((x) => x.ok));
  const stored = decodeReplicatedKey((await peer.replicaStore.getRecord(p, k.fields.id))!);
  t.truthy(stored.tombstone);
  t.is(stored.wrappedMaterial, null);
});
