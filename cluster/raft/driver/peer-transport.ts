/**
 * The network seam of the driver. Sending is fire-and-forget: raft tolerates loss, reordering and
 * duplication, so a transport may drop messages (queue full, peer down) and must never block the driver.
 * Received messages are handed to the driver's handler; a transport delivers only messages that passed
 * its own shape checks (the core checks the rest and ignores what it cannot use).
 */
import type { Message, NodeId } from "../core/types.js";

/** How sending one InstallSnapshot ended: the peer acknowledged the whole image, or the send failed. */
export type SnapshotOutcome = "delivered" | "failed";

export interface PeerTransport {
  /**
   * Starts delivering received messages to `onMessage`. Called once by the driver. A transport that knows
   * when a snapshot send ends (chunked, acknowledged) tells `onSnapshotSent` once per snapshot it started
   * sending, so the leader probes the follower again at once instead of waiting snapshotTimeoutTicks
   * (etcd ReportSnapshot). Snapshots it drops without starting them (a transfer to that peer is under
   * way) are not reported: the transfer under way reports.
   */
  start(
    onMessage: (message: Message) => void,
    onSnapshotSent?: (to: NodeId, outcome: SnapshotOutcome) => void,
  ): void;
  /** Queues messages for their `to` peers. Never throws for an unknown or unreachable peer: drops. */
  send(messages: Message[]): void;
  /** Learns or updates a peer's address (membership changes carry them in conf-change contexts). */
  setPeerAddress(id: NodeId, address: string): void;
  /** Stops sending to a peer and forgets it (removed member). */
  removePeer(id: NodeId): void;
  close(): Promise<void>;
}
