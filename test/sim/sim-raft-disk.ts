import {
  emptyHardState,
  type HardState,
  type PersistedState,
  type Snapshot,
} from "../../cluster/raft/core/index.js";
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
import type { Prng } from "./prng.js";
import { SimViolation } from "./safety-checker.js";

/** A write the disk refused (the simulated EIO or ENOSPC): the driver must stop on it. */
export class SimStorageFault extends Error {
  override readonly name = "SimStorageFault";
  constructor(readonly code: "EIO" | "ENOSPC") {
    super(`simulated ${code} on write`);
  }
}

/** What one batch did to the raft state, kept beside its records so the checkers need not decode. */
interface BatchMeta {
  snapshot: { index: number; term: number; voters: string[] } | null;
  /** `voters`: for a membership change, the voters it leads to. */
  entries: { index: number; term: number; voters: string[] | null }[];
  /** compact(): entries up to here deleted, snapshot at this index. */
  compactTo: { index: number; term: number; voters: string[] } | null;
  hardState: HardState | null;
}

/** A shadow of the raft state a set of records holds: index -> term, the snapshot and the hard state. */
export class RaftShadow {
  terms = new Map<number, number>();
  /** Highest index in `terms` (0 when empty); the log is contiguous, so deletes walk down from here. */
  last = 0;
  /** Membership changes in the log: index -> the voters they lead to. */
  confs = new Map<number, string[]>();
  /** Voters as of the snapshot (null: no snapshot yet). */
  snapVoters: string[] | null = null;
  snapIndex = 0;
  snapTerm = 0;
  hardState: HardState = emptyHardState();

  clone(): RaftShadow {
    const c = new RaftShadow();
    c.terms = new Map(this.terms);
    c.last = this.last;
    c.confs = new Map(this.confs);
    c.snapVoters = this.snapVoters;
    c.snapIndex = this.snapIndex;
    c.snapTerm = this.snapTerm;
    c.hardState = { ...this.hardState };
    return c;
  }

  apply(m: BatchMeta): void {
    if (m.snapshot !== null) {
      this.terms.clear();
      this.last = 0;
      this.confs.clear();
      this.snapIndex = m.snapshot.index;
      this.snapTerm = m.snapshot.term;
      this.snapVoters = m.snapshot.voters;
    }
    if (m.entries.length > 0) {
      const first = m.entries[0]!.index;
      for (let i = this.last; i >= first; i--) {
        this.terms.delete(i);
        this.confs.delete(i);
      }
      for (const e of m.entries) {
        this.terms.set(e.index, e.term);
        if (e.voters !== null) this.confs.set(e.index, e.voters);
      }
      this.last = m.entries[m.entries.length - 1]!.index;
    }
    if (m.compactTo !== null) {
      this.snapIndex = m.compactTo.index;
      this.snapTerm = m.compactTo.term;
      this.snapVoters = m.compactTo.voters;
      for (const i of [...this.terms.keys()]) if (i <= m.compactTo.index) this.terms.delete(i);
      for (const i of [...this.confs.keys()]) if (i <= m.compactTo.index) this.confs.delete(i);
      if (this.last <= m.compactTo.index) this.last = 0;
    }
    if (m.hardState !== null) this.hardState = { ...m.hardState };
  }

  /** Whether this state holds entry (index, term): in its log or covered by its snapshot. */
  holds(index: number, term: number): boolean {
    return index <= this.snapIndex || this.terms.get(index) === term;
  }
}

/** Faults the simulator asks of one write: crash before or after it, or fail it. */
export type WriteFault = "crash-before" | "crash-after" | "EIO" | "ENOSPC" | null;

/**
 * One node's disk under the PRODUCTION record layout (cluster/raft/driver/raft-records.ts: same keys, same
 * batches, same CRC-framed values as the LevelDB storage), over a key-value engine with LevelDB's
 * guarantees: a batch is atomic (a torn last batch is discarded whole, as LevelDB's log recovery does),
 * batches land in order, and a synced batch makes itself and every batch before it durable. A crash keeps
 * the durable records plus a random prefix of the unsynced batches (lost unsynced writes), and may flip
 * a bit in a durable record, which the production decoder must refuse at the next load.
 *
 * Synchronous (returns no promises), so the driver runs its loop without yielding.
 */
export class SimRaftDisk implements RaftStorage {
  /** What survives a crash. */
  private durable = new Map<string, Uint8Array>();
  /** What the running process reads and wrote: durable plus unsynced. */
  private view = new Map<string, Uint8Array>();
  private pending: { ops: RecordOp[]; meta: BatchMeta }[] = [];
  private range: EntryRange = { first: 1, last: 0 };
  /** The raft state the durable records hold (what a quorum-durability checker counts). */
  durableShadow = new RaftShadow();
  /** The raft state the process view holds. */
  viewShadow = new RaftShadow();
  /** Asked before every write; the simulator answers with a fault drawn from the seed, or null. */
  fault: (kind: "save" | "compact", hardState: boolean) => WriteFault = () => null;
  /** Called when a crash must stop the process (throws out of the driver's loop). */
  onCrash: () => never = () => {
    throw new Error("sim disk: crash without handler");
  };
  writes = 0;
  syncs = 0;

  constructor(readonly id: string) {}

  load(): PersistedState {
    const entries = [...this.view.entries()]
      .filter(([k]) => k >= ENTRY_KEY_MIN && k <= ENTRY_KEY_MAX)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const { state, range } = loadRecords(this.view.get(HARD_STATE_KEY), this.view.get(SNAPSHOT_KEY), entries);
    this.range = range;
    return state;
  }

  /** Called with every Ready's update before it is written (the simulator's checkers look at it). */
  onSave: (update: RaftStorageUpdate) => void = () => {};

  save(update: RaftStorageUpdate): void {
    this.onSave(update);
    const { ops, range } = saveOps(update, this.range);
    if (ops.length === 0) return;
    const meta: BatchMeta = {
      snapshot:
        update.snapshot === null
          ? null
          : {
              index: update.snapshot.metadata.index,
              term: update.snapshot.metadata.term,
              voters: update.snapshot.metadata.confState.voters,
            },
      entries: update.entries.map((e) => ({
        index: e.index,
        term: e.term,
        voters: e.confState?.voters ?? null,
      })),
      compactTo: null,
      hardState: update.hardState,
    };
    this.write(ops, meta, update.sync, "save", update.hardState !== null);
    this.range = range;
  }

  compact(snapshot: Snapshot): void {
    const { ops, range } = compactOps(snapshot, this.range);
    const meta: BatchMeta = {
      snapshot: null,
      entries: [],
      compactTo: {
        index: snapshot.metadata.index,
        term: snapshot.metadata.term,
        voters: snapshot.metadata.confState.voters,
      },
      hardState: null,
    };
    this.write(ops, meta, true, "compact", false);
    this.range = range;
  }

  async close(): Promise<void> {}

  private write(
    ops: RecordOp[],
    meta: BatchMeta,
    sync: boolean,
    kind: "save" | "compact",
    hardState: boolean,
  ): void {
    const fault = this.fault(kind, hardState);
    if (fault === "crash-before") this.onCrash();
    if (fault === "EIO" || fault === "ENOSPC") throw new SimStorageFault(fault);
    this.writes++;
    for (const op of ops) {
      if (op.type === "put") this.view.set(op.key, op.value);
      else this.view.delete(op.key);
    }
    this.viewShadow.apply(meta);
    this.pending.push({ ops, meta });
    if (sync) this.flush(this.pending.length);
    if (fault === "crash-after") this.onCrash();
  }

  /** Makes the first `count` unsynced batches durable, in order, checking the durable hard state. */
  private flush(count: number): void {
    this.syncs++;
    for (const b of this.pending.splice(0, count)) {
      for (const op of b.ops) {
        if (op.type === "put") this.durable.set(op.key, op.value);
        else this.durable.delete(op.key);
      }
      const before = this.durableShadow.hardState;
      this.durableShadow.apply(b.meta);
      const after = this.durableShadow.hardState;
      if (after.term < before.term) {
        throw new SimViolation(
          "disk-term-decreased",
          `${this.id}: durable term ${before.term} -> ${after.term}`,
        );
      }
      if (after.term === before.term && before.vote !== null && after.vote !== before.vote) {
        throw new SimViolation(
          "disk-vote-changed",
          `${this.id}: durable vote in term ${after.term} changed ${before.vote} -> ${after.vote}`,
        );
      }
    }
  }

  /**
   * The process died: keep a random prefix of the unsynced batches (each one whole: a torn batch is
   * discarded), drop the rest, and with probability `flipRate` flip one bit of one durable record.
   * Returns what happened, for the trace.
   */
  crash(rng: Prng, flipRate: number): { kept: number; lost: number; flipped: string | null } {
    const kept = rng.range(0, this.pending.length);
    const lost = this.pending.length - kept;
    this.flush(kept);
    this.pending = [];
    let flipped: string | null = null;
    if (this.durable.size > 0 && rng.chance(flipRate)) {
      const keys = [...this.durable.keys()].sort();
      const key = rng.pick(keys);
      const value = this.durable.get(key)!.slice();
      const bit = rng.nextInt(value.length * 8);
      value[bit >> 3]! ^= 1 << (bit & 7);
      this.durable.set(key, value);
      flipped = `${key} bit ${bit}`;
    }
    this.view = new Map(this.durable);
    this.viewShadow = this.durableShadow.clone();
    return { kept, lost, flipped };
  }

  /**
   * The disk is replaced by an empty one (the machine comes back wiped, and never under this id). The
   * durable shadow keeps what it held: an ack it sent before the wipe was honest, and the quorum checker
   * counts it (losing a disk after acknowledging is a fault raft does not hide, not a bug).
   */
  wipe(): void {
    this.durable.clear();
    this.view.clear();
    this.pending = [];
    this.viewShadow = new RaftShadow();
    this.range = { first: 1, last: 0 };
  }
}
