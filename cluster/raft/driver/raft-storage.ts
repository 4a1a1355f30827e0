/**
 * The durability seam of the driver. Every write method resolves only once its data is SYNCED (fsync'd),
 * because the driver sends the messages that depend on it (votes, append acks) right after. Each write is
 * atomic: after a crash either all of it is on disk or none of it is.
 */
import type { Entry, HardState, PersistedState, Snapshot } from "../core/types.js";

/** What one Ready asks to persist (Ready step 1), written as one atomic, synced batch. */
export interface RaftStorageUpdate {
  /** An installed snapshot: stored, and EVERY stored log entry deleted (the core discarded its log). */
  snapshot: Snapshot | null;
  /** Deletes every stored entry with index >= entries[0].index, then stores these. */
  entries: Entry[];
  /** Overwrites the stored hard state. */
  hardState: HardState | null;
  /** Whether the write must be fsync'd before save() resolves (the driver decides; see raft-driver.ts). */
  sync: boolean;
}

export interface RaftStorage {
  /**
   * Reads back what was persisted: hard state (emptyHardState() when none), the latest snapshot (null when
   * none) and the stored entries after it, contiguous and in order.
   */
  load(): Promise<PersistedState>;
  /** Persists one Ready's snapshot, entries and hard state together; resolves once synced. */
  save(update: RaftStorageUpdate): Promise<void>;
  /**
   * Stores a snapshot the application took (from RaftNode.compact) and deletes stored entries up to its
   * index, atomically; resolves once synced.
   */
  compact(snapshot: Snapshot): Promise<void>;
  close(): Promise<void>;
}
