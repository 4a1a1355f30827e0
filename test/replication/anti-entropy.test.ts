import test from "ava";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { recordKey } from "../../src/store/record-key.js";
import { PART_POWER, TestCluster } from "./replication-cluster.js";

const PEERS = ["a", "b", "c", "d", "e"];

async function topOf(c: TestCluster, peer: string, p: number): Promise<string> {
  return (await c.peer(peer).replica.digest(p))!.top().toString("hex");
}

test("anti-entropy pushes the buckets that differ until the primaries' digests are equal", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const keys = Array.from({ length: 30 }, () => c.newKey("vol-ae"));
  const p = c.partitionOf(keys[0]!);
  const [p1, p2, p3] = c.placement.primaries(p);
  // Records that reached one primary only (written to its replica directly).
  for (const k of keys.slice(0, 20)) await c.peer(p1!).replica.put(p, encodeReplicatedKey(k));
  for (const k of keys.slice(20)) await c.peer(p2!).replica.put(p, encodeReplicatedKey(k));
  t.not(await topOf(c, p1!, p), await topOf(c, p3!, p));
  await c.peer(p1!).antiEntropy.runOnce();
  await c.peer(p2!).antiEntropy.runOnce();
  const tops = await Promise.all([p1!, p2!, p3!].map((x) => topOf(c, x, p)));
  t.is(new Set(tops).size, 1, "all three primaries hold the same records");
  t.is((await c.peer(p3!).replicaStore.scanPartition(p, 100)).length, 30);
  t.true(c.peer(p1!).antiEntropy.metrics.recordsPushed < 60, "only the differing buckets travelled");
});

test("a damaged partition is quarantined and re-fetched from the other primaries while the peer serves the rest", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey("vol-q");
  const p = c.partitionOf(k);
  const [p1, p2] = c.placement.primaries(p);
  let other: ReplicatedKey = c.newKey("vol-other");
  for (let i = 0; c.partitionOf(other) === p || !c.primariesOf(other).includes(p1!); i++)
    other = c.newKey(`vol-o${i}`);
  await c.peer(p2!).coordinator.write(k);
  await c.peer(p2!).coordinator.write(other);
  await new Promise((r) => setTimeout(r, 100)); // the third copies land
  const peer = c.peer(p1!);
  const damaged = encodeReplicatedKey(k);
  damaged[damaged.length - 33]! ^= 0x01;
  await peer.store.write([
    { type: "put", sublevel: "records", key: recordKey(p, k.fields.id, PART_POWER), value: damaged },
  ]);

  const r = await c.peer(p1!).coordinator.read(k.fields.id); // p1's own answer is refused; the others answer
  t.deepEqual(new Uint8Array(r!.wrappedMaterial!), k.wrappedMaterial);
  t.true(peer.replica.isQuarantined(p));
  const served = await peer.replica.handle({
    from: "x",
    items: [{ kind: "get", partition: c.partitionOf(other), id: other.fields.id }],
  });
  t.like(served.results[0], { ok: true }, "the rest of the peer is served");

  // A pass repairs once both other primaries answered its pulls; a pull lost to a slow, loaded
  // machine leaves the quarantine for the next pass, as the periodic runner would.
  let passes = 0;
  while (peer.replica.isQuarantined(p) && passes < 5) {
    await peer.antiEntropy.runOnce();
    passes += 1;
  }
  t.false(peer.replica.isQuarantined(p), `repaired (after ${passes} passes)`);
  const back = await peer.replicaStore.getRecord(p, k.fields.id);
  t.deepEqual(new Uint8Array(decodeReplicatedKey(back!).wrappedMaterial!), k.wrappedMaterial);
  t.deepEqual(await peer.replicaStore.quarantined(), []);
});
