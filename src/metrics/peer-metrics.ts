/**
 * A peer's Prometheus metrics (prom-client), in their own registry. Counters and histograms are fed
 * through the hooks (metrics-hooks.ts) as things happen; state that already exists elsewhere (seal
 * state, master key epoch, raft term and indexes) is read at scrape time from `sources`, so it is
 * never stale. Labels take only names from a fixed set (services, methods, statuses, check names),
 * never ids, identities or anything a client chose freely, so their number stays bounded; and no
 * metric carries key material.
 */
import * as prom from "prom-client";
import type { PeerMetricsHooks, ReplicationMetricsSources } from "./metrics-hooks.js";

export interface PeerMetricsSources {
  sealed(): boolean;
  /** 0 while sealed. */
  masterKeyEpoch(): number;
  raft(): { term: number; commit: number; applied: number; leader: string };
}

export interface PeerMetrics extends PeerMetricsHooks {
  readonly registry: prom.Registry;
  /** The exposition text and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>;
  /** Stops the leader watch. */
  close(): void;
}

/** Call latencies, seconds: half a millisecond to ten seconds. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Group commit batch sizes, 1 to 4096 (powers of two). */
const BATCH_BUCKETS = prom.exponentialBuckets(1, 2, 13);
/** How often the raft leader is sampled for lockbox_raft_leader_changes_total (also at each scrape). */
const LEADER_SAMPLE_MS = 1_000;

export function createPeerMetrics(sources: PeerMetricsSources, labels: { peerId: string }): PeerMetrics {
  const registry = new prom.Registry();
  registry.setDefaultLabels({ peer: labels.peerId });
  prom.collectDefaultMetrics({ register: registry, prefix: "lockbox_" });
  const r = [registry];

  const calls = new prom.Counter({
    name: "lockbox_grpc_calls_total",
    help: "gRPC calls answered, by service, method and status",
    labelNames: ["service", "method", "status"] as const,
    registers: r,
  });
  const callSeconds = new prom.Histogram({
    name: "lockbox_grpc_call_duration_seconds",
    help: "gRPC call latency from headers to status, by service, method and status",
    labelNames: ["service", "method", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers: r,
  });
  const batchWrites = new prom.Histogram({
    name: "lockbox_store_group_commit_batch_writes",
    help: "Writer calls per synced group-commit batch",
    buckets: BATCH_BUCKETS,
    registers: r,
  });
  const batchOps = new prom.Histogram({
    name: "lockbox_store_group_commit_batch_ops",
    help: "Operations per synced group-commit batch",
    buckets: BATCH_BUCKETS,
    registers: r,
  });
  const syncSeconds = new prom.Histogram({
    name: "lockbox_store_sync_duration_seconds",
    help: "Time to write and sync one group-commit batch",
    buckets: LATENCY_BUCKETS,
    registers: r,
  });

  let lastLeader: string | undefined;
  const leaderChanges = new prom.Counter({
    name: "lockbox_raft_leader_changes_total",
    help: "Times this peer saw the raft leader change to another known leader (sampled every second)",
    registers: r,
  });
  const sampleLeader = (): ReturnType<PeerMetricsSources["raft"]> => {
    const s = sources.raft();
    if (s.leader !== "" && s.leader !== lastLeader) {
      if (lastLeader !== undefined) leaderChanges.inc();
      lastLeader = s.leader;
    }
    return s;
  };
  const leaderTimer = setInterval(sampleLeader, LEADER_SAMPLE_MS);
  leaderTimer.unref();
  const raftGauge = (
    name: string,
    help: string,
    read: (s: ReturnType<PeerMetricsSources["raft"]>) => number,
  ) =>
    new prom.Gauge({
      name,
      help,
      registers: r,
      collect() {
        this.set(read(sampleLeader()));
      },
    });
  raftGauge("lockbox_raft_term", "Current raft term", (s) => s.term);
  raftGauge("lockbox_raft_commit_index", "Highest raft log index known committed", (s) => s.commit);
  raftGauge("lockbox_raft_applied_index", "Highest raft log index applied", (s) => s.applied);
  new prom.Gauge({
    name: "lockbox_raft_has_leader",
    help: "1 when this peer knows a raft leader",
    registers: r,
    collect() {
      this.set(sampleLeader().leader === "" ? 0 : 1);
    },
  });
  new prom.Gauge({
    name: "lockbox_sealed",
    help: "1 while the peer is sealed (holds no master key and serves no keys)",
    registers: r,
    collect() {
      this.set(sources.sealed() ? 1 : 0);
    },
  });
  new prom.Gauge({
    name: "lockbox_master_key_epoch",
    help: "Epoch of the master key new wraps use (0 while sealed)",
    registers: r,
    collect() {
      this.set(sources.masterKeyEpoch());
    },
  });

  // Replication: read from the parts' own counters at each scrape, once the peer attached them.
  let replication: ReplicationMetricsSources = {};
  const gauge = (name: string, help: string, read: () => number | undefined): void => {
    new prom.Gauge({
      name,
      help,
      registers: r,
      collect() {
        this.set(read() ?? 0);
      },
    });
  };
  /**
   * A counter that follows a cumulative number kept elsewhere: each scrape adds what it grew by. A
   * number that went down belongs to parts attached anew (restarted); it counts on from there.
   */
  const follow = (name: string, help: string, read: () => number | undefined): void => {
    let last = 0;
    new prom.Counter({
      name,
      help,
      registers: r,
      collect() {
        const now = read();
        if (now === undefined) return;
        if (now > last) this.inc(now - last);
        last = now;
      },
    });
  };
  const coordinator = () => replication.coordinator?.metrics;
  const handoff = () => replication.handoff?.metrics;
  const antiEntropy = () => replication.antiEntropy?.metrics;
  gauge(
    "lockbox_replication_in_flight_writes",
    "Writes this peer coordinates that are sent to replicas and not yet acknowledged by W or failed",
    () => {
      const c = coordinator();
      return c === undefined ? undefined : c.writes - c.writesAcked - c.writesUnavailable;
    },
  );
  follow("lockbox_replication_writes_total", "Writes coordinated", () => coordinator()?.writes);
  follow(
    "lockbox_replication_writes_unavailable_total",
    "Writes that failed: fewer than W replicas synced them in time",
    () => coordinator()?.writesUnavailable,
  );
  follow(
    "lockbox_replication_handoff_copies_total",
    "Copies written to a handoff peer for a primary that was down",
    () => coordinator()?.handoffCopies,
  );
  follow("lockbox_replication_reads_total", "Reads coordinated", () => coordinator()?.reads);
  follow(
    "lockbox_replication_reads_unavailable_total",
    "Reads that failed: fewer than R replicas answered",
    () => coordinator()?.readsUnavailable,
  );
  follow(
    "lockbox_replication_read_repairs_total",
    "Stale replicas repaired after a read",
    () => coordinator()?.repairs,
  );
  gauge(
    "lockbox_replication_hints_pending",
    "Hints held for primaries that were down, after the last handoff pass (of those one pass reads)",
    () => handoff()?.held,
  );
  follow("lockbox_hinted_handoff_passes_total", "Hinted handoff passes", () => handoff()?.passes);
  follow(
    "lockbox_hinted_handoff_delivered_total",
    "Handoff copies every primary now holds (then dropped here)",
    () => handoff()?.delivered,
  );
  follow(
    "lockbox_hinted_handoff_expired_total",
    "Hints older than the hint age limit, ended without delivery (anti-entropy takes over)",
    () => handoff()?.expired,
  );
  follow("lockbox_anti_entropy_passes_total", "Anti-entropy passes completed", () => antiEntropy()?.passes);
  follow(
    "lockbox_anti_entropy_partitions_compared_total",
    "Partition digests compared with a replica",
    () => antiEntropy()?.compared,
  );
  follow(
    "lockbox_anti_entropy_buckets_differing_total",
    "Digest buckets found different from a replica's",
    () => antiEntropy()?.bucketsDiffering,
  );
  follow(
    "lockbox_anti_entropy_records_pushed_total",
    "Records pushed to replicas by anti-entropy",
    () => antiEntropy()?.recordsPushed,
  );
  follow(
    "lockbox_anti_entropy_repairs_started_total",
    "Quarantined partitions whose repair from replicas started",
    () => antiEntropy()?.repairsStarted,
  );
  follow(
    "lockbox_anti_entropy_repairs_done_total",
    "Quarantined partitions repaired from replicas",
    () => antiEntropy()?.repairsDone,
  );
  const replicaStore = () => replication.replicaStore?.metrics;
  follow(
    "lockbox_replica_reads_skipped_total",
    "Record reads the replica left out: its id filter knew the id was never stored here (a new key's merge)",
    () => replicaStore()?.readsSkipped,
  );
  gauge(
    "lockbox_replica_id_filter_failed",
    "1 when the replica's scan of its record ids at start failed: the id filter is unused, every merge reads LevelDB",
    () => (replicaStore()?.filterScanFailed === true ? 1 : 0),
  );
  // Rebalance progress of the current plan (each ring change starts a new one, from zero), read from
  // the partition receiver and handover. Bytes still to move are not known ahead of the stream (a
  // partition's size is learnt by pulling it), so "remaining" is counted in partitions.
  const receiving = () => replication.receiver?.progress();
  const giving = () => replication.handover?.progress();
  gauge(
    "lockbox_rebalance_receive_partitions",
    "Partitions this peer streams in for the current rebalance (from their old holders)",
    () => receiving()?.partitions,
  );
  gauge(
    "lockbox_rebalance_received_partitions",
    "Partitions of the current rebalance fully streamed in",
    () => receiving()?.received,
  );
  gauge(
    "lockbox_rebalance_receive_remaining_partitions",
    "Partitions of the current rebalance not yet streamed in",
    () => {
      const p = receiving();
      return p === undefined ? undefined : p.partitions - p.received;
    },
  );
  gauge(
    "lockbox_rebalance_received_records",
    "Records merged in by the current rebalance",
    () => receiving()?.records,
  );
  gauge(
    "lockbox_rebalance_received_bytes",
    "Record bytes merged in by the current rebalance",
    () => receiving()?.bytes,
  );
  gauge(
    "lockbox_rebalance_receive_bytes_per_second",
    "Record bytes per second merged in since the current rebalance started",
    () => receiving()?.bytesPerSecond,
  );
  gauge(
    "lockbox_rebalance_give_partitions",
    "Partitions this peer holds but no longer owns, to hand over in the current rebalance",
    () => giving()?.partitions,
  );
  gauge(
    "lockbox_rebalance_given_partitions",
    "Partitions handed over (every new primary confirmed every record) and dropped here",
    () => giving()?.dropped,
  );
  gauge(
    "lockbox_rebalance_give_remaining_partitions",
    "Partitions of the current rebalance not yet handed over",
    () => {
      const p = giving();
      return p === undefined ? undefined : p.partitions - p.dropped;
    },
  );
  gauge(
    "lockbox_rebalance_given_records",
    "Records confirmed by the new primaries in the current rebalance",
    () => giving()?.records,
  );
  gauge(
    "lockbox_rebalance_given_bytes",
    "Record bytes confirmed by the new primaries in the current rebalance",
    () => giving()?.bytes,
  );
  gauge(
    "lockbox_rebalance_handover_busy",
    "1 from a ring change until every partition this peer gives away is handed over",
    () => {
      const p = giving();
      return p === undefined ? undefined : p.busy ? 1 : 0;
    },
  );
  // The rebalance as a whole, in partition-replicas (one replica of one partition placed on a new
  // peer): each peer counts those moving TO it, so summed over the peers these are the whole ring
  // change, and the sum of the totals is what `lockbox ring status` prints as the partition-replicas
  // moved by the last change. A peer receives at most one replica of a partition, so its share is
  // its receive plan. They are read at each scrape like the gauges above; nothing has to push them.
  gauge(
    "lockbox_rebalance_moved_partition_replicas",
    "Partition-replicas of the current rebalance streamed in to this peer (sum over peers: the whole change)",
    () => receiving()?.received,
  );
  gauge(
    "lockbox_rebalance_total_partition_replicas",
    "Partition-replicas the current rebalance moves to this peer (sum over peers: the whole change)",
    () => receiving()?.partitions,
  );
  const attestations = new prom.Counter({
    name: "lockbox_attestation_checks_total",
    help: "Attestation checks, by check and result (ok or failed)",
    labelNames: ["check", "result"] as const,
    registers: r,
  });

  return {
    registry,
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    close() {
      clearInterval(leaderTimer);
    },
    call(c) {
      const labels = { service: c.service, method: c.method, status: c.status };
      calls.inc(labels);
      callSeconds.observe(labels, c.seconds);
    },
    groupCommit(b) {
      batchWrites.observe(b.writes);
      batchOps.observe(b.ops);
      syncSeconds.observe(b.seconds);
    },
    replication: {
      attach(parts) {
        replication = parts;
      },
    },
    attestation: {
      result: (a) => attestations.inc({ check: a.check, result: a.ok ? "ok" : "failed" }),
    },
  };
}
