import type { Entry, HardState, PersistedState, Snapshot } from "../../cluster/raft/core/index.js";
import { emptyHardState } from "../../cluster/raft/core/index.js";
import type { RaftStorage, RaftStorageUpdate } from "../../cluster/raft/driver/raft-storage.js";

/**
 * A plain in-memory RaftStorage for the raft unit tests (test/raft/raft-harness.ts): synchronous, every
 * write durable at once, its fields open for tests to read and to preset (a log as a crash left it).
 * The simulator uses SimRaftDisk instead (production records, crash semantics, faults).
 */
export class SimDisk implements RaftStorage {
  hardState: HardState = emptyHardState();
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  /** Application state saved beside the snapshot (the simulated state machine image). */
  writes = 0;

  constructor(bootstrap: Snapshot | null) {
    this.snapshot = bootstrap;
  }

  save(update: RaftStorageUpdate): void {
    this.persistSnapshot(update);
    this.persistEntries(update);
    this.persistHardState(update);
  }

  compact(snapshot: Snapshot): void {
    this.persistCompaction(snapshot);
  }

  async close(): Promise<void> {}

  /** Step 1a of the Ready contract. */
  persistSnapshot(rd: Pick<RaftStorageUpdate, "snapshot">): void {
    if (rd.snapshot === null) return;
    this.snapshot = rd.snapshot;
    this.entries = [];
    this.writes++;
  }

  /** Step 1b. */
  persistEntries(rd: Pick<RaftStorageUpdate, "entries">): void {
    if (rd.entries.length === 0) return;
    const first = rd.entries[0]!.index;
    const base = this.snapshot?.metadata.index ?? 0;
    if (first <= base) throw new Error(`sim disk: entries from ${first} at or below snapshot ${base}`);
    this.entries = this.entries.filter((e) => e.index < first);
    const expect = base + this.entries.length + 1;
    if (first !== expect) throw new Error(`sim disk: gap, appending ${first} after ${expect - 1}`);
    this.entries.push(...rd.entries);
    this.writes++;
  }

  /** Step 1c. */
  persistHardState(rd: Pick<RaftStorageUpdate, "hardState">): void {
    if (rd.hardState === null) return;
    this.hardState = { ...rd.hardState };
    this.writes++;
  }

  /** A compaction the application asked for (synced at once, like the driver's). */
  persistCompaction(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.entries = this.entries.filter((e) => e.index > snapshot.metadata.index);
    this.writes++;
  }

  load(): PersistedState {
    return { hardState: { ...this.hardState }, snapshot: this.snapshot, entries: [...this.entries] };
  }
}
