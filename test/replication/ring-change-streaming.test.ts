/**
 * A ring change while keys exist, with the real ReplicationNode of a peer (src/replication/
 * replication-node.ts) on real gRPC and LevelDB, four nodes in this process (not peer processes: the
 * ring changes here are handed to the nodes directly, as the control state would). Three peers hold
 * N = 3 of every partition; a fourth joins: it streams in the partitions it now holds (PartitionReceiver),
 * the peers that lost a partition push its records to the new primaries and drop them only once all
 * confirmed (PartitionHandover), and afterwards every key reads with its exact version through every
 * node, each record sits on exactly its three current primaries, and the progress counters add up.
 */
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ReplicatedKey } from "../../cluster/replication/index.js";
import { encodeRing, placedKeyId, RingBuilder, scopeHash32 } from "../../cluster/ring/index.js";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { ReplicationNode } from "../../src/replication/replication-node.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";
import { peerServerCredentials, peerTls } from "../raft-process/peer-tls.js";

const SALT = new Uint8Array([1, 2, 3, 4]);
const POWER = 4;
const TUNABLES = {
  writeDeadlineMs: 5_000,
  readDeadlineMs: 5_000,
  antiEntropyIntervalMs: 3_600_000, // off in effect: the streaming alone must move everything
  handoffIntervalMs: 3_600_000,
  reclaimAgeMs: 7 * 86_400_000,
  hintMaxAgeMs: 86_400_000,
};

interface Node {
  id: string;
  node: ReplicationNode;
  store: PeerStore;
  server: grpc.Server;
  address: string;
}

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

function key(n: number): ReplicatedKey {
  const stamp = { wallMs: Date.now(), logical: n, peer: "a" };
  const random = new Uint8Array(16).map((_, i) => (n * 37 + i * 11) & 0xff);
  return {
    fields: {
      id: placedKeyId(scopeHash32(SALT, "proj", `vol-${n % 10}`), random),
      project: "proj",
      scope: `vol-${n % 10}`,
      name: `k${n}`,
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: 1,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(40).fill((n % 200) + 1),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
}

test("a fourth peer joins: partitions stream to it, old owners drop them only after the new ones confirm, every key stays readable on its three primaries", async (t) => {
  t.timeout(120_000);
  const ids = ["a", "b", "c", "d"];
  const nodes: Node[] = [];
  const dirs: string[] = [];
  // One teardown, in this order: AVA runs teardowns last-registered first, and a directory removed
  // while its LevelDB is still open can gain a file during the removal (ENOTEMPTY).
  t.teardown(async () => {
    for (const n of nodes) {
      await n.node.close();
      n.server.forceShutdown();
      await n.store.close();
    }
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  for (const id of ids) {
    const dir = await mkdtemp(join(tmpdir(), `lockbox-ring-change-${id}-`));
    dirs.push(dir);
    const store = await openPeerStore(dir);
    const node = await ReplicationNode.open({
      self: id,
      store,
      clusterSalt: SALT,
      partitionPower: POWER,
      tls: await peerTls(id),
      admitPeer: ({ peerId }) => (ids.includes(peerId) ? null : "not a member"),
      tunables: TUNABLES,
      nowMs: () => Date.now(),
      log: (line) => t.log(`${id}: ${line}`),
      // Every node gets the same ring at once here: no need to wait for it to settle.
      handoverSettleMs: 10,
    });
    const server = new grpc.Server(peerGrpcOptions());
    const svc = node.peerService();
    server.addService(svc.definition, svc.implementation);
    const credentials = await peerServerCredentials(id);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", credentials, (e, p) => (e ? reject(e) : resolve(p))),
    );
    nodes.push({ id, node, store, server, address: `127.0.0.1:${port}` });
  }
  const addresses = new Map(nodes.map((n) => [n.id, n.address]));
  const builder = RingBuilder.create({ partPower: POWER, replicas: 3, minPartHours: 0 });
  for (const id of ["a", "b", "c"]) builder.addPeer({ id, zone: `z-${id}`, weight: 1 });
  builder.rebalance(0);
  const ringView = () => ({
    version: builder.version,
    bytes: Buffer.from(encodeRing(builder.toState())).toString("base64"),
  });
  const v1 = ringView();
  for (const n of nodes) n.node.sync({ ring: v1, addresses });

  const keys = Array.from({ length: 120 }, (_, i) => key(i));
  for (const k of keys) await nodes[0]!.node.keys.write(k);

  builder.addPeer({ id: "d", zone: "z-d", weight: 1 });
  const moved = builder.rebalance(1_000).moved;
  t.true(moved > 0);
  const v2 = ringView();
  for (const n of nodes) n.node.sync({ ring: v2, addresses });

  const d = nodes[3]!.node;
  await until(
    "d streamed in its partitions and every leaver handed its partitions over",
    () => {
      const r = d.receiver.progress();
      const given = nodes.slice(0, 3).map((n) => n.node.handover.progress());
      return (
        r.partitions > 0 &&
        r.received === r.partitions &&
        given.every((g) => !g.busy && g.dropped === g.partitions)
      );
    },
    60_000,
  );
  const view = d.ringView(v2, 0);
  t.is(view.partitions_received, view.partitions_receiving);
  t.true(Number(view.records_received) > 0);
  t.is(view.partition_replicas_moved, moved);

  // Every key: readable through every node, with its exact version, on exactly its three primaries.
  const placement = d.placement;
  for (const k of keys) {
    for (const n of nodes) {
      const got = await n.node.keys.read(k.fields.id);
      t.deepEqual(got?.wrappedMaterial, k.wrappedMaterial, `${k.fields.id} through ${n.id}`);
    }
    const partition = placement.partitionOfKey(k.fields.id);
    const holders: string[] = [];
    for (const n of nodes) {
      if ((await n.node.replica.localRecord(partition, k.fields.id)) !== undefined) holders.push(n.id);
    }
    t.deepEqual(holders.sort(), [...placement.primaries(partition)].sort(), k.fields.id);
  }
  const given = nodes.slice(0, 3).reduce((s, n) => s + n.node.handover.progress().partitions, 0);
  t.true(given > 0, "the old owners handed partitions over");
});
