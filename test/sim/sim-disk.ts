import type { Entry, HardState, PersistedState, Ready, Snapshot } from "../../cluster/raft/core/index.js";
import { emptyHardState } from "../../cluster/raft/core/index.js";

/**
 * One node's durable storage. It holds only what the driver persisted from a Ready (or a compaction),
 * step by step, so a crash between steps keeps exactly the prefix that was written: anything the core
 * had not handed out, or that was handed out but not yet written, is lost.
 */
export class SimDisk {
  hardState: HardState = emptyHardState();
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  /** Application state saved beside the snapshot (the simulated state machine image). */
  writes = 0;

  constructor(bootstrap: Snapshot | null) {
    this.snapshot = bootstrap;
  }

  /** Step 1a of the Ready contract. */
  persistSnapshot(rd: Ready): void {
    if (rd.snapshot === null) return;
    this.snapshot = rd.snapshot;
    this.entries = [];
    this.writes++;
  }

  /** Step 1b. */
  persistEntries(rd: Ready): void {
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
  persistHardState(rd: Ready): void {
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
