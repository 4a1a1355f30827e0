/**
 * Issue 10's rebalance acceptance with real peer processes: three peers (N = 3) under a bounded load of
 * imports, reads and deletes; a 4th peer joins, then a 5th, then a peer is drained. After each change
 * the ring moves close to the ideal share of partition-replicas, the new owners report the partitions
 * streamed in (GetRing, what `lockbox ring status` prints) until none remain, the old owners hand over
 * and drop theirs; throughout, reads keep succeeding and no read misses an acknowledged key or returns
 * other material. Afterwards every acknowledged key reads through every peer, and on disk every
 * partition is on exactly N peers (none on the drained one) with identical records.
 *
 * Peers join by the NOT ATTESTED test path (allowUnattestedMembersForTests).
 */
import test from "ava";
import { randomInt } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import type { LockboxClient } from "../../src/client/index.js";
import { clusterTeardown, ProcessCluster, REPLICATION_FAST, waitFor } from "../helpers/cluster-processes.js";
import { checkReadsEverywhere, convergeOnDisk, newLedger, prng, runLoad } from "./load-and-check.js";

const REPLICAS = 3;
const PARTITION_POWER = 8;
const PARTITIONS = 2 ** PARTITION_POWER;
const CLIENTS = 8;
const STEP_TIMEOUT_MS = 60_000;

interface RingView {
  version: string | number;
  local_version: string | number;
  partition_replicas_moved: number;
  partitions_receiving: number;
  partitions_received: number;
  records_received: string | number;
  bytes_received: string | number;
  bytes_per_second: number;
  partitions_giving: number;
  partitions_given: number;
  peers: { peer_id: string; partitions: number }[];
}

test("rebalance: a 4th and a 5th peer join under load and a peer is drained; nothing acknowledged is lost, reads keep succeeding, progress is reported, moves are close to ideal", async (t) => {
  t.timeout(300_000);
  const seed = Number(process.env.LOCKBOX_FAULT_SEED ?? randomInt(2 ** 31));
  t.log(`seed ${seed}`);
  const cluster = await ProcessCluster.start({
    peers: 3,
    configure: (c) => {
      // min_part_hours 0: the 5th peer may take partitions the 4th took minutes before.
      c.replication = { ...REPLICATION_FAST, replicas: REPLICAS, minPartHours: 0 };
      c.partitionPower = PARTITION_POWER;
    },
  });
  t.teardown(clusterTeardown(t, cluster));
  await cluster.waitKeysServed(60_000);
  const ring = async (id: string): Promise<RingView> => {
    const c = admins.get(id) ?? cluster.client(id, { deadlineMs: 5_000, attemptsMax: 1 });
    admins.set(id, c);
    return c.adminCall<RingView>("GetRing", {});
  };
  const admins = new Map<string, LockboxClient>();

  const ids = cluster.peers.map((p) => p.id);
  const clients = Array.from({ length: CLIENTS }, (_, i) =>
    cluster.client(
      ids.map((_, j) => ids[(i + j) % ids.length]!),
      { cache: false, deadlineMs: 5_000 },
    ),
  );
  const ledger = newLedger();
  let stopLoad: () => void = () => {};
  const load = runLoad(ledger, {
    clients,
    untilMs: Date.now() + 240_000,
    stop: new Promise<void>((r) => (stopLoad = r)),
    random: prng(seed),
    scopes: 48,
  });
  await sleep(3_000);

  /** Waits for ring version > `after` everywhere and for every move it caused to finish; returns the view. */
  const settle = async (what: string, after: number): Promise<RingView> => {
    let view: RingView | undefined;
    const progress: string[] = [];
    await waitFor(
      async () => {
        const views = await Promise.all(cluster.running.map(async (p) => [p.id, await ring(p.id)] as const));
        view = views[0]![1];
        if (views.some(([, v]) => Number(v.local_version) <= after)) return false;
        const line = views
          .map(
            ([id, v]) =>
              `${id} in ${v.partitions_received}/${v.partitions_receiving} (${v.records_received} records, ${v.bytes_received} B, ${Math.round(v.bytes_per_second)} B/s) out ${v.partitions_given}/${v.partitions_giving}`,
          )
          .join("; ");
        if (progress.at(-1) !== line) progress.push(line);
        return views.every(
          ([, v]) =>
            v.partitions_received === v.partitions_receiving && v.partitions_given === v.partitions_giving,
        );
      },
      STEP_TIMEOUT_MS,
      `${what}: the ring change applied and every partition moved`,
    );
    // What `lockbox ring status` showed along the way: the first, some in between, the last.
    const step = Math.max(1, Math.ceil(progress.length / 6));
    const shown = progress.filter((_, i) => i % step === 0 || i === progress.length - 1);
    t.log(`${what}: ${progress.length} progress readings, e.g.\n  ${shown.join("\n  ")}`);
    return view!;
  };
  const readsBefore = (): number => ledger.counts.reads;

  // 3 -> 4 peers: the new peer's ideal share is a quarter of the partition-replicas.
  let version = Number((await ring("peer-1")).version);
  let reads = readsBefore();
  await cluster.addPeer();
  await cluster.waitMembers(4, STEP_TIMEOUT_MS);
  let view = await settle("peer-4 joined", version);
  const ideal4 = (REPLICAS * PARTITIONS) / 4;
  t.log(`peer-4: moved ${view.partition_replicas_moved}, ideal ${ideal4}`);
  t.true(view.partition_replicas_moved >= ideal4 * 0.9 && view.partition_replicas_moved <= ideal4 * 1.1);
  t.true(ledger.counts.reads > reads, "reads succeeded while peer-4 joined");
  const received4 = await ring("peer-4");
  t.true(received4.partitions_receiving > 0, "peer-4 reported partitions streamed in");

  // 4 -> 5 peers: a fifth of them.
  version = Number(view.version);
  reads = readsBefore();
  await cluster.addPeer();
  await cluster.waitMembers(5, STEP_TIMEOUT_MS);
  view = await settle("peer-5 joined", version);
  const ideal5 = (REPLICAS * PARTITIONS) / 5;
  t.log(`peer-5: moved ${view.partition_replicas_moved}, ideal ${ideal5}`);
  t.true(view.partition_replicas_moved >= ideal5 * 0.9 && view.partition_replicas_moved <= ideal5 * 1.1);
  t.true(ledger.counts.reads > reads, "reads succeeded while peer-5 joined");

  // Drain peer-2: everything it holds moves to the others.
  version = Number(view.version);
  reads = readsBefore();
  const held = view.peers.find((p) => p.peer_id === "peer-2")!.partitions;
  await clients[0]!.adminCall("DrainPeer", { peer_id: "peer-2" });
  view = await settle("peer-2 drained", version);
  t.log(`drain: moved ${view.partition_replicas_moved}, peer-2 held ${held}`);
  t.is(view.peers.find((p) => p.peer_id === "peer-2")?.partitions ?? 0, 0, "peer-2 holds no partition");
  t.true(view.partition_replicas_moved >= held && view.partition_replicas_moved <= held * 1.1);
  t.true(ledger.counts.reads > reads, "reads succeeded while peer-2 drained");

  stopLoad();
  await load;
  t.log(
    `load: ${ledger.counts.imports} imports, ${ledger.counts.reads} reads, ${ledger.counts.deletes} deletes acknowledged; ${ledger.counts.failed} failed calls`,
  );
  t.deepEqual(ledger.violations, [], "no read returned other material or a deleted key");
  t.is(ledger.counts.readsMissed, 0, "no read missed an acknowledged key while partitions moved");

  const perPeer = new Map(
    cluster.peers.map((p) => [
      p.id,
      cluster.client(p.id, { cache: false, deadlineMs: 5_000, attemptsMax: 1 }),
    ]),
  );
  const check = await checkReadsEverywhere(ledger, perPeer, Date.now() + 40_000);
  t.deepEqual(check.problems.slice(0, 20), [], "every acknowledged key reads through every peer");

  const { view: disk, left } = await convergeOnDisk(cluster, PARTITION_POWER, REPLICAS, 3, 3_000);
  t.deepEqual(left.slice(0, 20), [], "every partition on exactly N peers with identical records");
  t.is(disk.digests.get("peer-2")?.size ?? 0, 0, "the drained peer holds no records");
});
