/**
 * The network seam of the driver. Sending is fire-and-forget: raft tolerates loss, reordering and
 * duplication, so a transport may drop messages (queue full, peer down) and must never block the driver.
 * Received messages are handed to the driver's handler; a transport delivers only messages that passed
 * its own shape checks (the core checks the rest and ignores what it cannot use).
 */
import type { Message, NodeId } from "../core/types.js";

export interface PeerTransport {
  /** Starts delivering received messages to `onMessage`. Called once by the driver. */
  start(onMessage: (message: Message) => void): void;
  /** Queues messages for their `to` peers. Never throws for an unknown or unreachable peer: drops. */
  send(messages: Message[]): void;
  /** Learns or updates a peer's address (membership changes carry them in conf-change contexts). */
  setPeerAddress(id: NodeId, address: string): void;
  /** Stops sending to a peer and forgets it (removed member). */
  removePeer(id: NodeId): void;
  close(): Promise<void>;
}
