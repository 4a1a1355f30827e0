/**
 * What the parts of a peer report to its metrics, by name, without knowing Prometheus: the peer
 * builds a PeerMetrics (peer-metrics.ts, prom-client) when its metrics listener is on and hands
 * these hooks to its parts; when it is off they get NO_METRICS, and prom-client is never loaded.
 * The replication parts keep their own counters and progress (src/replication: Coordinator.metrics,
 * HandoffRunner.metrics, AntiEntropy.metrics, PartitionReceiver and PartitionHandover progress,
 * rebalance included); the peer that starts them hands them over once with `replication.attach()`,
 * and every scrape reads them, so no part has to remember to push a number (the rebalance gauges once
 * had a push hook that nothing called, and read 0 through every real rebalance).
 */

export interface CallObservation {
  service: string;
  method: string;
  /** Status name: "OK", "NOT_FOUND", ... */
  status: string;
  seconds: number;
}

export interface GroupCommitObservation {
  /** Writer calls in the batch. */
  writes: number;
  /** Operations in the batch. */
  ops: number;
  /** The synced write of the batch. */
  seconds: number;
}

export interface PeerMetricsHooks {
  call(c: CallObservation): void;
  groupCommit(b: GroupCommitObservation): void;
  replication: {
    /** The running replication parts, read at each scrape; a later call replaces earlier ones. */
    attach(parts: ReplicationMetricsSources): void;
  };
  attestation: {
    /** One check of one verification (check names as the verifier reports them). */
    result(r: { check: string; ok: boolean }): void;
  };
}

/**
 * The counters the src/replication classes keep, by shape (so metrics/ needs no import of them):
 * `{ coordinator, handoff, antiEntropy, replicaStore, receiver, handover }` of a peer (its
 * ReplicationNode) satisfy it as they are.
 */
export interface ReplicationMetricsSources {
  coordinator?: {
    readonly metrics: Readonly<{
      writes: number;
      writesAcked: number;
      writesUnavailable: number;
      handoffCopies: number;
      reads: number;
      readsUnavailable: number;
      repairs: number;
    }>;
  };
  handoff?: {
    readonly metrics: Readonly<{
      passes: number;
      held: number;
      pushed: number;
      delivered: number;
      dropped: number;
      expired: number;
    }>;
  };
  antiEntropy?: {
    readonly metrics: Readonly<{
      passes: number;
      compared: number;
      bucketsDiffering: number;
      recordsPushed: number;
      repairsStarted: number;
      repairsDone: number;
    }>;
  };
  /** The replica's record store (LevelReplicaStore): its in-memory filter of the record ids it holds. */
  replicaStore?: {
    readonly metrics: Readonly<{ readsSkipped: number; filterScanFailed: boolean }>;
  };
  /** Rebalance, receiving side (PartitionReceiver): the current plan's progress. */
  receiver?: {
    progress(): Readonly<{
      partitions: number;
      received: number;
      records: number;
      bytes: number;
      bytesPerSecond: number;
    }>;
  };
  /** Rebalance, giving side (PartitionHandover): the current plan's progress. */
  handover?: {
    progress(): Readonly<{
      partitions: number;
      dropped: number;
      records: number;
      bytes: number;
      busy: boolean;
    }>;
  };
}

const ignore = (): void => {};

export const NO_METRICS: PeerMetricsHooks = {
  call: ignore,
  groupCommit: ignore,
  replication: { attach: ignore },
  attestation: { result: ignore },
};
