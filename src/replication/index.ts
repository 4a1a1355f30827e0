/**
 * Replication of key records over the ring (DESIGN §4), transport-agnostic: the wiring supplies a
 * PlacementView (ring + peer health), a PeerLink (peer streams) and a ReplicaStore (LevelDB).
 */
export { AntiEntropy, type AntiEntropyMetrics, type AntiEntropyOptions } from "./anti-entropy.js";
export { Coordinator, type CoordinatorMetrics, type CoordinatorOptions } from "./coordinator.js";
export { HandoffRunner, type HandoffMetrics, type HandoffOptions } from "./hinted-handoff.js";
export { LevelReplicaStore } from "./leveldb-replica-store.js";
export { LinkBatcher, type ItemSender, type LinkBatcherOptions } from "./link-batcher.js";
export * from "./peer-link.js";
export { RingPlacement, type PlacementView } from "./placement-view.js";
export { Replica, type ReplicaMetrics, type ReplicaOptions } from "./replica.js";
export type { Hint, ReplicaStore, ReplicaStoreOp, StoredRecord } from "./replica-store.js";
export type { ReplicationBugs } from "./replication-bugs.js";
