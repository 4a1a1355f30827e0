/** The pure raft core: see raft-node.ts for the algorithm and types.ts for the IO contract. */
export * from "./types.js";
export { RaftNode, applyConfChange, quorum } from "./raft-node.js";
