/**
 * Deliberately broken variants of the replication code, each a one-line change where it is used, so
 * the simulator can prove it catches them (test/sim/replication/planted-bugs.ts, like RaftBugs for the
 * raft core). Never set outside the simulator.
 */
export interface ReplicationBugs {
  /** Coordinator: answer a write OK after the first synced copy instead of W. */
  ackBeforeQuorum?: boolean;
  /** Coordinator: answer a read from the first replica that answers instead of merging R answers. */
  readTrustsOneReplica?: boolean;
  /** Handoff: drop a handoff copy once its owner holds it, whether or not every other primary does. */
  handoffDropEarly?: boolean;
}
