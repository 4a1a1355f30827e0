/**
 * The ring (DESIGN §4), pure: partition functions, placement by scope and key ids that carry it,
 * the Swift-style builder, the lookup view, reports and the codec the control state stores.
 */
export { PARTITION_POWER_MAX, partitionCount, partitionOf } from "./partition.js";
export { partitionOfHash32, scopeHash32, scopePartition } from "./placement.js";
export { KEY_ID_RANDOM_BYTES, keyIdPlacement, partitionOfKeyId, placedKeyId } from "./key-id.js";
export { RingBuilder, type RebalanceResult, type RingShape } from "./ring-builder.js";
export { Ring } from "./ring.js";
export { RING_FORMAT, decodeRing, encodeRing } from "./ring-codec.js";
export { RingError, type RingErrorCode } from "./ring-error.js";
export { BALANCE_MAX, type BalanceReport, type DispersionReport, type PeerBalance } from "./ring-report.js";
export { validateRingState, type RingPeer, type RingSlot, type RingState } from "./ring-state.js";
export { partitionMoves, type PartitionMove } from "./partition-moves.js";
export { formatRingShow } from "./ring-show.js";
