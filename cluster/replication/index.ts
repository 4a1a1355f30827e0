/** Replication rules (DESIGN §4), pure: HLC, record merge, quorum places, partition digests. */
export * from "./hlc.js";
export * from "./partition-digest.js";
export * from "./quorum.js";
export * from "./replicated-key.js";
export { ReplicationError, type ReplicationErrorCode } from "./replication-error.js";
export * from "./replicated-key-codec.js";
