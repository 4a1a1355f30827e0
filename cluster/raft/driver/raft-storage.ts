/**
 * The durability seam of the driver. It obeys one rule, the one written on `Ready`
 * (cluster/raft/core/types.ts): each write is atomic (a crash leaves all of it or none), writes reach the
 * disk in the order they were made (a crash keeps a prefix of them), and a write with `sync: true` is
 * durable, together with every write before it, by the time save() resolves. A write with `sync: false`
 * (only a commit index moves) may be lost at a crash, with whatever unsynced writes follow it.
 *
 * An implementation whose IO is synchronous (the simulator's disk) may return nothing instead of a
 * promise: the driver then handles the whole Ready without yielding, which keeps a simulation
 * deterministic without a real event loop. Every failure (EIO, ENOSPC, a damaged record) is thrown or
 * rejected; the driver stops on it (fail-stop) rather than run on state it could not persist.
 */
import type { Entry, HardState, PersistedState, Snapshot } from "../core/types.js";

/** What one Ready asks to persist (Ready step 1), written as one atomic batch. */
export interface RaftStorageUpdate {
  /** An installed snapshot: stored, and EVERY stored log entry deleted (the core discarded its log). */
  snapshot: Snapshot | null;
  /** Deletes every stored entry with index >= entries[0].index, then stores these. */
  entries: Entry[];
  /** Overwrites the stored hard state. */
  hardState: HardState | null;
  /** `Ready.mustSync`, passed through unchanged: durable (fsync'd) before save() resolves iff true. */
  sync: boolean;
}

export interface RaftStorage {
  /**
   * Reads back what was persisted: hard state (emptyHardState() when none), the latest snapshot (null when
   * none) and the stored entries after it, contiguous and in order. Throws if a stored record is damaged
   * (its checksum fails): a damaged raft store is never served.
   */
  load(): Promise<PersistedState> | PersistedState;
  /** Persists one Ready's snapshot, entries and hard state as one atomic write; synced iff `update.sync`. */
  save(update: RaftStorageUpdate): Promise<void> | void;
  /**
   * Stores a snapshot the application took (from RaftNode.compact) and deletes stored entries up to its
   * index, atomically; ALWAYS synced before it resolves (the entries it deletes may be the only copy).
   */
  compact(snapshot: Snapshot): Promise<void> | void;
  close(): Promise<void>;
}
