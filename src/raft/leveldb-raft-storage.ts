/**
 * RaftStorage on one LevelDB sublevel. It takes the sublevel (not a path) so the raft log lives in the
 * peer's single LevelDB beside the records (DESIGN.md §7); one process, one database. Reads go to the
 * sublevel; writes go through `write` when given (in the peer: the store's group commit, which syncs
 * every batch, so there every write is synced whatever the driver asks), else straight to the sublevel.
 *
 * The records (keys, checksummed values, which batch persists a Ready) are cluster/raft/driver/raft-records.ts,
 * shared with the simulator's disk. Every write is one atomic LevelDB batch (LevelDB's log keeps them in
 * order, so a crash leaves a prefix), with { sync } exactly as `Ready.mustSync` asks (entries, snapshots,
 * term and vote: synced; a commit-only hard state: not). compact() always syncs.
 */
import type { AbstractSublevel } from "abstract-level";
import type { RaftStorage, RaftStorageUpdate } from "../../cluster/raft/driver/raft-storage.js";
import {
  compactOps,
  ENTRY_KEY_MAX,
  ENTRY_KEY_MIN,
  HARD_STATE_KEY,
  loadRecords,
  saveOps,
  SNAPSHOT_KEY,
  type EntryRange,
  type RecordOp,
} from "../../cluster/raft/driver/raft-records.js";
import type { PersistedState, Snapshot } from "../../cluster/raft/core/types.js";

export { entryKey, RaftStorageCorrupt } from "../../cluster/raft/driver/raft-records.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RaftSublevel = AbstractSublevel<any, any, string, Uint8Array>;

/** One write to the raft sublevel; a list of them is written atomically. */
export type RaftStoreOp = RecordOp;

export interface LevelDbRaftStorageOptions {
  /**
   * Writes `ops` to the raft sublevel as one atomic batch, resolving once it is on disk (synced at least
   * when `sync` is set). Default: a batch on the sublevel itself.
   */
  write?: (ops: RaftStoreOp[], sync: boolean) => Promise<void>;
}

export class LevelDbRaftStorage implements RaftStorage {
  /** Entry keys on disk, kept to delete by index. */
  #range: EntryRange = { first: 1, last: 0 };
  #loaded = false;

  readonly #write: (ops: RaftStoreOp[], sync: boolean) => Promise<void>;

  constructor(
    readonly db: RaftSublevel,
    options: LevelDbRaftStorageOptions = {},
  ) {
    this.#write = options.write ?? ((ops, sync) => this.db.batch(ops, { sync } as object));
  }

  async load(): Promise<PersistedState> {
    const hs = await this.db.get(HARD_STATE_KEY);
    const snap = await this.db.get(SNAPSHOT_KEY);
    const entries: [string, Uint8Array][] = [];
    for await (const kv of this.db.iterator({ gte: ENTRY_KEY_MIN, lte: ENTRY_KEY_MAX })) entries.push(kv);
    const { state, range } = loadRecords(hs, snap, entries);
    this.#range = range;
    this.#loaded = true;
    return state;
  }

  async save(update: RaftStorageUpdate): Promise<void> {
    this.#assertLoaded();
    const { ops, range } = saveOps(update, this.#range);
    if (ops.length === 0) return;
    await this.#write(ops, update.sync);
    this.#range = range;
  }

  async compact(snapshot: Snapshot): Promise<void> {
    this.#assertLoaded();
    const { ops, range } = compactOps(snapshot, this.#range);
    await this.#write(ops, true);
    this.#range = range;
  }

  /** The sublevel belongs to the caller's database; closing that database is the caller's job. */
  async close(): Promise<void> {}

  #assertLoaded(): void {
    if (!this.#loaded) throw new Error("LevelDbRaftStorage: load() must run before any write");
  }
}
