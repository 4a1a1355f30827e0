/**
 * A peer's metrics and health listener, scraped over real HTTP from a real peer (startPeer, real
 * gRPC over TLS, real LevelDB) after real calls: the call counters and latency histograms, the
 * group commit histograms, raft, seal state and master key epoch all hold plausible values; and
 * once the peer is sealed, /readyz fails, gRPC health says NOT_SERVING and key calls are refused.
 * The replication gauges are read from the parts attached to the metrics, the replica id filter's
 * also from a PeerMetrics of its own (no peer) fed by a real replica store.
 */
import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { service as healthService } from "grpc-health-check";

import type { ReplicatedKey } from "../../cluster/replication/index.js";
import { placedKeyId, RingBuilder, scopeHash32 } from "../../cluster/ring/index.js";
import { TestCluster } from "../replication/replication-cluster.js";
import {
  closeNodes,
  ringRecord,
  startNode,
  startServer,
  stopServer,
  type TestNode,
} from "../replication/replication-nodes.js";
import { call, clientsFor, failure, startSharedPeer } from "../server/peer-fixture.js";
import { createPeerMetrics } from "../../src/metrics/peer-metrics.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { openPeerStore } from "../../src/store/peer-store.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (the lines that are samples). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const s = samples.find(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  );
  return s?.value;
}

async function get(address: string, path: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(`http://${address}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get("content-type") ?? "" };
}

test("metrics after real calls: counters and histograms by method and status, store, raft, seal; /readyz fails once sealed", async (t) => {
  const f = await startSharedPeer({ metricsListen: "127.0.0.1:0" });
  t.teardown(() => f.close());
  const metricsAddress = f.peer.metricsAddress;
  if (metricsAddress === undefined) return t.fail("no metrics listener");
  t.regex(metricsAddress, /^127\.0\.0\.1:\d+$/);

  const admin = clientsFor(t, f, f.admin);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await call(admin.keys, "CreateKey", {
      project: "m",
      scope: `v${i}`,
      name: `k${i}`,
      algorithm: "KEY_ALGORITHM_AES",
      bit_length: 256,
    });
    if (!r.ok) return t.fail(r.error.message);
    ids.push(r.value.key.id as string);
  }
  for (const id of ids.slice(0, 2)) t.true((await call(admin.keys, "GetKey", { id })).ok);
  const missing = await failure(
    t,
    call(admin.keys, "GetKey", { id: "00000000-0000-8000-8000-000000000000" }),
  );
  t.is(missing.code, grpc.status.NOT_FOUND);
  // No client certificate: refused by call admission, still observed.
  const anonymous = clientsFor(t, f, null);
  const refused = await failure(t, call(anonymous.keys, "GetKey", { id: ids[0] }));
  t.is(refused.code, grpc.status.UNAUTHENTICATED);

  t.deepEqual(await get(metricsAddress, "/healthz"), { status: 200, body: "ok\n", type: "text/plain" });
  const ready = await get(metricsAddress, "/readyz");
  t.is(ready.status, 200);
  t.deepEqual(JSON.parse(ready.body), { ready: true, reason: "" });

  // The raft group of one elects itself after an election timeout, then commits and applies its
  // first entry: scrape until it has (bounded).
  const settled = (text: string): boolean => {
    const x = parseExposition(text);
    return value(x, "lockbox_raft_has_leader") === 1 && (value(x, "lockbox_raft_applied_index") ?? 0) >= 1;
  };
  let scraped = await get(metricsAddress, "/metrics");
  for (let i = 0; i < 100 && !settled(scraped.body); i++) {
    await new Promise((r) => setTimeout(r, 100));
    scraped = await get(metricsAddress, "/metrics");
  }
  t.is(scraped.status, 200);
  t.regex(scraped.type, /^text\/plain; version=0\.0\.4/);
  const s = parseExposition(scraped.body);
  const keys = { service: "lockbox.v1.KeyService" };
  t.is(value(s, "lockbox_grpc_calls_total", { ...keys, method: "CreateKey", status: "OK" }), 3);
  t.is(value(s, "lockbox_grpc_calls_total", { ...keys, method: "GetKey", status: "OK" }), 2);
  t.is(value(s, "lockbox_grpc_calls_total", { ...keys, method: "GetKey", status: "NOT_FOUND" }), 1);
  t.is(value(s, "lockbox_grpc_calls_total", { ...keys, method: "GetKey", status: "UNAUTHENTICATED" }), 1);
  const create = { ...keys, method: "CreateKey", status: "OK" };
  t.is(value(s, "lockbox_grpc_call_duration_seconds_count", create), 3);
  const createSum = value(s, "lockbox_grpc_call_duration_seconds_sum", create)!;
  t.true(createSum > 0 && createSum < 30, `CreateKey latency sum ${createSum} s`);
  t.is(value(s, "lockbox_grpc_call_duration_seconds_bucket", { ...create, le: "+Inf" }), 3);
  const within10ms = value(s, "lockbox_grpc_call_duration_seconds_bucket", { ...create, le: "0.01" })!;
  t.true(within10ms >= 0 && within10ms <= 3, "buckets are cumulative and bounded by the count");
  t.true(
    s.every((x) => !x.name.startsWith("lockbox_") || x.labels.peer === "peer-1"),
    "every metric names the peer",
  );

  // Every create and every audited call is a synced group-commit batch.
  const batches = value(s, "lockbox_store_group_commit_batch_ops_count")!;
  t.true(batches >= 3, `${batches} batches`);
  t.is(value(s, "lockbox_store_sync_duration_seconds_count"), batches);
  t.true(value(s, "lockbox_store_sync_duration_seconds_sum")! > 0);
  t.true(value(s, "lockbox_store_group_commit_batch_ops_sum")! >= batches, "at least one op per batch");

  // A raft group of one: it elected itself, committed and applied at least its first entry.
  const term = value(s, "lockbox_raft_term")!;
  const commit = value(s, "lockbox_raft_commit_index")!;
  const applied = value(s, "lockbox_raft_applied_index")!;
  t.true(term >= 1, `term ${term}`);
  t.true(commit >= 1 && applied >= 1 && applied <= commit, `commit ${commit} applied ${applied}`);
  t.is(value(s, "lockbox_raft_has_leader"), 1);
  t.is(value(s, "lockbox_raft_leader_changes_total"), 0);
  t.is(value(s, "lockbox_sealed"), 0);
  t.is(value(s, "lockbox_master_key_epoch"), 1);
  // Replication is not started by the peer yet: its metrics exist, at zero, until parts are attached.
  t.is(value(s, "lockbox_replication_hints_pending"), 0);
  t.is(value(s, "lockbox_replication_in_flight_writes"), 0);
  t.is(value(s, "lockbox_replication_writes_total"), 0);
  t.is(value(s, "lockbox_anti_entropy_passes_total"), 0);
  t.is(value(s, "lockbox_replica_reads_skipped_total"), 0);
  t.is(value(s, "lockbox_replica_id_filter_failed"), 0);
  t.true(value(s, "lockbox_process_resident_memory_bytes")! > 0);

  f.peer.seal();
  const sealed = await get(metricsAddress, "/readyz");
  t.is(sealed.status, 503);
  t.deepEqual(JSON.parse(sealed.body), { ready: false, reason: "sealed" });
  t.is((await get(metricsAddress, "/healthz")).status, 200, "alive, only not ready");
  const after = parseExposition((await get(metricsAddress, "/metrics")).body);
  t.is(value(after, "lockbox_sealed"), 1);
  t.is(value(after, "lockbox_master_key_epoch"), 0);

  const Health = grpc.makeGenericClientConstructor(healthService, "Health");
  const credentials = grpc.credentials.createSsl(Buffer.from(f.ca.certificatePem));
  const health = new Health(f.peer.address, credentials, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  t.teardown(() => health.close());
  for (const name of ["", "lockbox.v1.KeyService"]) {
    const r = await call<{ status: string }>(health as never, "Check", { service: name });
    if (!r.ok) return t.fail(r.error.message);
    t.is(r.value.status, "NOT_SERVING", `health of '${name}'`);
  }
  const whileSealed = await failure(t, call(admin.keys, "GetKey", { id: ids[0] }));
  t.is(whileSealed.code, grpc.status.FAILED_PRECONDITION);

  t.deepEqual((await get(metricsAddress, "/nope")).status, 404);
  const post = await fetch(`http://${metricsAddress}/metrics`, { method: "POST", body: "x" });
  t.is(post.status, 405);
});

/**
 * The peer does not start replication yet, so the replication parts here run IN-PROCESS (the real
 * Coordinator, HandoffRunner and AntiEntropy on real LevelDB stores, an in-process link) and are
 * attached to a real peer's metrics the way the peer will attach its own: the scrape over HTTP
 * shows their writes, handoff copies, pending hints, deliveries and anti-entropy passes.
 */
test("replication metrics follow the attached parts (in-process replication cluster, then real replication nodes): writes, hints pending then delivered, anti-entropy passes, rebalance partitions and bytes received and handed over, reads the replica id filter skipped", async (t) => {
  const f = await startSharedPeer({ metricsListen: "127.0.0.1:0" });
  t.teardown(() => f.close());
  const metricsAddress = f.peer.metricsAddress;
  if (metricsAddress === undefined) return t.fail("no metrics listener");
  const scrape = async (): Promise<Sample[]> => parseExposition((await get(metricsAddress, "/metrics")).body);

  const c = await TestCluster.start(t, ["a", "b", "c", "d", "e"]);
  const k = c.newKey("vol-metrics");
  const [p1, , p3] = c.primariesOf(k);
  c.down.add(p3!);
  c.cut.add(p3!);
  await c.peer(p1!).coordinator.write(k);
  await c.peer(p1!).coordinator.write(c.newKey("vol-metrics"));
  const h = c.handoffsOf(k).find((x) => !c.down.has(x))!;
  for (let i = 0; i < 100 && (await c.peer(h).replicaStore.hints(10)).length === 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  // The owner is still away: the pass keeps the hint.
  await c.peer(h).handoff.runOnce();
  await c.peer(p1!).antiEntropy.runOnce();
  f.peer.metrics.replication.attach({
    coordinator: c.peer(p1!).coordinator,
    handoff: c.peer(h).handoff,
    antiEntropy: c.peer(p1!).antiEntropy,
  });

  const s = await scrape();
  const coordinated = c.peer(p1!).coordinator.metrics;
  t.true(coordinated.writes >= 2);
  t.is(value(s, "lockbox_replication_writes_total"), coordinated.writes);
  t.is(value(s, "lockbox_replication_writes_unavailable_total"), 0);
  t.is(value(s, "lockbox_replication_in_flight_writes"), 0, "both writes were acknowledged");
  t.true(value(s, "lockbox_replication_handoff_copies_total")! >= 1, "the copy for the down primary");
  t.is(value(s, "lockbox_replication_hints_pending"), c.peer(h).handoff.metrics.held);
  t.true(value(s, "lockbox_replication_hints_pending")! >= 1, "the owner is away: its hint waits");
  t.is(value(s, "lockbox_hinted_handoff_delivered_total"), 0);
  t.is(value(s, "lockbox_anti_entropy_passes_total"), 1);
  t.is(value(s, "lockbox_anti_entropy_partitions_compared_total"), c.peer(p1!).antiEntropy.metrics.compared);
  t.true(value(s, "lockbox_anti_entropy_partitions_compared_total")! >= 1);

  // The owner is back: the next pass takes the copy home, and the scrape says so.
  c.down.delete(p3!);
  c.cut.delete(p3!);
  await c.peer(h).handoff.runOnce();
  await c.peer(p1!).antiEntropy.runOnce();
  const after = await scrape();
  t.is(value(after, "lockbox_replication_hints_pending"), 0);
  t.true(value(after, "lockbox_hinted_handoff_delivered_total")! >= 1);
  t.is(value(after, "lockbox_hinted_handoff_passes_total"), 2);
  t.is(value(after, "lockbox_anti_entropy_passes_total"), 2);
  // Counters never go back, even when the parts are attached anew (a restarted replication).
  f.peer.metrics.replication.attach({});
  const detached = await scrape();
  t.is(value(detached, "lockbox_anti_entropy_passes_total"), 2);
  t.is(value(detached, "lockbox_replication_hints_pending"), 0);
  t.is(value(detached, "lockbox_rebalance_receive_partitions"), 0, "no receiver attached");

  // Rebalance progress, from real ReplicationNodes (real gRPC, LevelDB) as the peer attaches its own:
  // a, b, c hold every partition; d joins. While d's sources are unreachable its plan waits (every
  // partition remaining); once they are back, d has streamed every partition in and the old holders
  // have handed theirs over.
  const salt = new Uint8Array([9, 8, 7]);
  const members = ["a", "b", "c", "d"];
  const nodes: TestNode[] = [];
  t.teardown(() => closeNodes(nodes));
  for (const id of members) nodes.push(await startNode(t, id, members, { salt, power: 4 }));
  const [a, b, cc, d] = nodes as [TestNode, TestNode, TestNode, TestNode];
  const addresses = new Map(nodes.map((n) => [n.id, n.address]));
  const builder = RingBuilder.create({ partPower: 4, replicas: 3, minPartHours: 0 });
  for (const id of ["a", "b", "c"]) builder.addPeer({ id, zone: `z-${id}`, weight: 1 });
  builder.rebalance(0);
  for (const n of nodes) n.node.sync({ ring: ringRecord(builder), addresses });
  for (let i = 0; i < 60; i++) await a.node.keys.write(rebalanceKey(salt, i));
  f.peer.metrics.replication.attach(d.node);
  const before = await scrape();
  t.is(value(before, "lockbox_rebalance_receive_partitions"), 0, "no rebalance yet");
  t.is(value(before, "lockbox_rebalance_give_partitions"), 0);

  builder.addPeer({ id: "d", zone: "z-d", weight: 1 });
  t.true(builder.rebalance(1_000).moved > 0);
  for (const n of [a, b, cc]) stopServer(n);
  d.node.sync({ ring: ringRecord(builder), addresses });
  const waiting = await scrape();
  const planned = d.node.receiver.progress().partitions;
  t.true(planned > 0, "d receives partitions");
  t.is(value(waiting, "lockbox_rebalance_receive_partitions"), planned);
  t.is(value(waiting, "lockbox_rebalance_received_partitions"), 0, "no source reachable yet");
  t.is(value(waiting, "lockbox_rebalance_receive_remaining_partitions"), planned);
  t.is(value(waiting, "lockbox_rebalance_received_bytes"), 0);
  t.is(value(waiting, "lockbox_rebalance_total_partition_replicas"), planned);
  t.is(value(waiting, "lockbox_rebalance_moved_partition_replicas"), 0);

  for (const n of [a, b, cc]) await startServer(n);
  for (const n of [a, b, cc]) n.node.sync({ ring: ringRecord(builder), addresses });
  const giver = async (): Promise<TestNode | undefined> => {
    for (let i = 0; i < 300; i++) {
      const done =
        d.node.receiver.progress().received === planned &&
        [a, b, cc].every((n) => !n.node.handover.progress().busy);
      if (done) return [a, b, cc].find((n) => n.node.handover.progress().partitions > 0);
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  };
  const g = await giver();
  if (g === undefined) return t.fail("the rebalance did not finish within 30 s");
  const received = d.node.receiver.progress();
  const after2 = await scrape();
  t.is(value(after2, "lockbox_rebalance_received_partitions"), planned);
  t.is(value(after2, "lockbox_rebalance_receive_remaining_partitions"), 0);
  t.is(value(after2, "lockbox_rebalance_moved_partition_replicas"), planned);
  t.is(value(after2, "lockbox_rebalance_total_partition_replicas"), planned);
  t.is(value(after2, "lockbox_rebalance_received_records"), received.records);
  t.true(received.records > 0, "d merged records in");
  t.is(value(after2, "lockbox_rebalance_received_bytes"), received.bytes);
  t.true(received.bytes >= received.records * 40, "each record carries at least its wrapped material");
  t.true(value(after2, "lockbox_rebalance_receive_bytes_per_second")! > 0);
  t.is(value(after2, "lockbox_rebalance_give_partitions"), 0, "d gives nothing away");

  f.peer.metrics.replication.attach(g.node);
  const given = g.node.handover.progress();
  const giverScrape = await scrape();
  t.true(given.partitions > 0 && given.records > 0);
  t.is(value(giverScrape, "lockbox_rebalance_give_partitions"), given.partitions);
  t.is(value(giverScrape, "lockbox_rebalance_given_partitions"), given.partitions, "every one handed over");
  t.is(value(giverScrape, "lockbox_rebalance_give_remaining_partitions"), 0);
  t.is(value(giverScrape, "lockbox_rebalance_given_records"), given.records);
  t.is(value(giverScrape, "lockbox_rebalance_given_bytes"), given.bytes);
  t.true(given.bytes >= given.records * 40);
  t.is(value(giverScrape, "lockbox_rebalance_handover_busy"), 0);
  // The giver stored 60 keys it never held: each merge skipped its read, as its store counted.
  const skipped = g.node.replicaStore.metrics.readsSkipped;
  t.true(skipped >= 1, "new keys' merges read nothing");
  t.is(value(giverScrape, "lockbox_replica_reads_skipped_total"), skipped);
  t.is(value(giverScrape, "lockbox_replica_id_filter_failed"), 0);
});

test("lockbox_replica_id_filter_failed reads 1 once the attached replica store's id scan failed at open (a real LevelDB closed under it), and the skipped-reads counter does not go back", async (t) => {
  // The metrics alone, fed by a real LevelReplicaStore; the seal and raft sources are fixed values
  // (no peer runs here), as the gauge reads only the replica store.
  const metrics = createPeerMetrics(
    {
      sealed: () => false,
      masterKeyEpoch: () => 1,
      raft: () => ({ term: 1, commit: 1, applied: 1, leader: "a" }),
    },
    { peerId: "a" },
  );
  t.teardown(() => metrics.close());
  const scrape = async (): Promise<Sample[]> => parseExposition((await metrics.scrape()).body);
  const dir = await mkdtemp(join(tmpdir(), "lockbox-metrics-filter-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  const healthyStore = await openPeerStore(join(dir, "healthy"));
  t.teardown(() => healthyStore.close());
  const healthy = new LevelReplicaStore(healthyStore, 10);
  await healthy.open();
  await healthy.write([{ type: "put-record", partition: 3, id: "a", value: new TextEncoder().encode("a") }]);
  t.is(await healthy.getRecord(3, "never"), undefined);
  metrics.replication.attach({ replicaStore: healthy });
  const before = await scrape();
  t.is(value(before, "lockbox_replica_id_filter_failed"), 0);
  t.is(value(before, "lockbox_replica_reads_skipped_total"), 1, "the read of an id never written");

  const brokenStore = await openPeerStore(join(dir, "broken"));
  const broken = new LevelReplicaStore(brokenStore, 10);
  await brokenStore.close(); // the id scan's iterator now fails
  await broken.open();
  metrics.replication.attach({ replicaStore: broken });
  const after = await scrape();
  t.is(value(after, "lockbox_replica_id_filter_failed"), 1);
  t.is(value(after, "lockbox_replica_reads_skipped_total"), 1, "a counter never goes back");
});

/** A key of scope `vol-(n % 10)`, placed by that scope (as the key service places its keys). */
function rebalanceKey(salt: Uint8Array, n: number): ReplicatedKey {
  const stamp = { wallMs: Date.now(), logical: n, peer: "a" };
  const random = new Uint8Array(16).map((_, i) => (n * 37 + i * 11) & 0xff);
  const scope = `vol-${n % 10}`;
  return {
    fields: {
      id: placedKeyId(scopeHash32(salt, "proj", scope), random),
      project: "proj",
      scope,
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
