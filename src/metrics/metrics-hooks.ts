/**
 * What the parts of a peer report to its metrics, by name, without knowing Prometheus: the peer
 * builds a PeerMetrics (peer-metrics.ts, prom-client) when its metrics listener is on and hands
 * these hooks to its parts; when it is off they get NO_METRICS, and prom-client is never loaded.
 * Hooks for work other parts are still building (replication, rebalance, attestation) are here
 * already, so those parts only have to call them.
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
    /** Records sent to replicas and not yet acknowledged. */
    inFlight(records: number): void;
    /** Hints held for peers that were down. */
    hintsPending(hints: number): void;
    /** One anti-entropy round: partitions compared, records pushed. */
    antiEntropyRound(r: { partitions: number; pushed: number; seconds: number }): void;
  };
  rebalance: {
    /** Partition-replicas moved so far out of those the current rebalance must move. */
    progress(p: { moved: number; total: number }): void;
  };
  attestation: {
    /** One check of one verification (check names as the verifier reports them). */
    result(r: { check: string; ok: boolean }): void;
  };
}

const ignore = (): void => {};

export const NO_METRICS: PeerMetricsHooks = {
  call: ignore,
  groupCommit: ignore,
  replication: { inFlight: ignore, hintsPending: ignore, antiEntropyRound: ignore },
  rebalance: { progress: ignore },
  attestation: { result: ignore },
};
