import { assert } from "./assert.js";
import type { ConfState, Entry, Snapshot } from "./types.js";

/**
 * The core's in-memory log: a snapshot, the entries after it, and how far they are durable
 * (`stableIndex`), committed and applied. Entries after `stableIndex` are "unstable": a crash loses them,
 * and the next Ready hands them to the driver to persist.
 */
export class RaftLog {
  snapshot: Snapshot;
  /** entries[i].index === snapshot.metadata.index + 1 + i */
  entries: Entry[];
  committed: number;
  applied: number;
  /** Last index the driver has persisted (advance() moves it). */
  stableIndex: number;
  /** A snapshot received from the leader that the driver has not persisted yet. */
  pendingSnapshot: Snapshot | null = null;
  /** Index and resulting config of every ConfChange entry in `entries`, in order. */
  private confEntries: { index: number; confState: ConfState }[] = [];

  constructor(snapshot: Snapshot, entries: Entry[], committed: number, applied: number) {
    this.snapshot = snapshot;
    this.entries = [];
    const first = snapshot.metadata.index + 1;
    entries.forEach((e, i) => {
      assert(
        e.index === first + i,
        () => `persisted entries not contiguous at ${e.index}, expected ${first + i}`,
      );
      assert(
        e.term >= (i === 0 ? snapshot.metadata.term : entries[i - 1]!.term),
        "persisted entry terms decrease",
      );
      this.pushEntry(e);
    });
    this.stableIndex = this.lastIndex();
    this.committed = Math.max(committed, snapshot.metadata.index);
    assert(
      this.committed <= this.lastIndex(),
      () => `commit ${committed} beyond last index ${this.lastIndex()}`,
    );
    this.applied = Math.max(applied, snapshot.metadata.index);
    assert(this.applied <= this.committed, () => `applied ${applied} beyond commit ${this.committed}`);
  }

  firstIndex(): number {
    return this.snapshot.metadata.index + 1;
  }

  lastIndex(): number {
    return this.snapshot.metadata.index + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }

  /** Term of the entry at `index`, or undefined if compacted away or beyond the end. */
  term(index: number): number | undefined {
    const snap = this.snapshot.metadata;
    if (index === snap.index) return snap.term;
    if (index < snap.index || index > this.lastIndex()) return undefined;
    return this.entries[index - snap.index - 1]!.term;
  }

  entry(index: number): Entry {
    const e = this.entries[index - this.snapshot.metadata.index - 1];
    assert(e !== undefined && e.index === index, () => `no entry at ${index}`);
    return e;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Entries in [lo, hi], at most `countMax` and (beyond the first) at most `bytesMax` payload bytes. */
  slice(lo: number, hi: number, countMax = Infinity, bytesMax = Infinity): Entry[] {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex(), () => `slice [${lo}, ${hi}] out of range`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= hi && out.length < countMax; i++) {
      const e = this.entry(i);
      bytes += payloadBytes(e);
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /** The leader's own appends. */
  append(entries: Entry[]): void {
    for (const e of entries) {
      assert(e.index === this.lastIndex() + 1, () => `append at ${e.index}, last is ${this.lastIndex()}`);
      assert(e.term >= this.lastTerm(), "append with a term below the last term");
      this.pushEntry(e);
    }
  }

  /**
   * Follower side of AppendEntries after a matching (prevIndex, prevTerm): skips entries already present,
   * truncates at the first conflict, appends the rest. Returns the index of the last new entry.
   */
  maybeAppend(prevIndex: number, entries: Entry[]): number {
    let i = 0;
    for (; i < entries.length; i++) {
      const e = entries[i]!;
      assert(e.index === prevIndex + 1 + i, "append message entries not contiguous");
      const t = this.term(e.index);
      if (t === undefined && e.index <= this.snapshot.metadata.index) continue; // compacted: committed, matches
      if (t !== e.term) break;
    }
    if (i < entries.length) {
      const first = entries[i]!.index;
      assert(
        first > this.committed,
        () => `conflict at ${first} would truncate committed entries (commit ${this.committed})`,
      );
      this.truncateFrom(first);
      for (; i < entries.length; i++) this.pushEntry(entries[i]!);
    }
    return prevIndex + entries.length;
  }

  private truncateFrom(index: number): void {
    assert(index > this.snapshot.metadata.index, "truncating into the snapshot");
    this.entries.length = index - this.snapshot.metadata.index - 1;
    while (this.confEntries.length > 0 && this.confEntries[this.confEntries.length - 1]!.index >= index) {
      this.confEntries.pop();
    }
    if (this.stableIndex >= index) this.stableIndex = index - 1;
  }

  private pushEntry(e: Entry): void {
    this.entries.push(e);
    if (e.confState !== null) this.confEntries.push({ index: e.index, confState: e.confState });
  }

  /** Latest configuration in the log (membership takes effect on append). */
  confState(): ConfState {
    const last = this.confEntries[this.confEntries.length - 1];
    return last !== undefined ? last.confState : this.snapshot.metadata.confState;
  }

  /** Index of the entry that set the current configuration (the snapshot's index if none in the log). */
  lastConfIndex(): number {
    const last = this.confEntries[this.confEntries.length - 1];
    return last !== undefined ? last.index : this.snapshot.metadata.index;
  }

  /** Configuration as of `index`. */
  confStateAt(index: number): ConfState {
    let cs = this.snapshot.metadata.confState;
    for (const c of this.confEntries) {
      if (c.index > index) break;
      cs = c.confState;
    }
    return cs;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), () => `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Replace the whole log by a snapshot from the leader (the log did not contain its last entry). */
  restore(snapshot: Snapshot): void {
    assert(snapshot.metadata.index > this.committed, "restoring a snapshot at or below commit");
    this.snapshot = snapshot;
    this.entries = [];
    this.confEntries = [];
    this.committed = snapshot.metadata.index;
    this.stableIndex = Math.min(this.stableIndex, snapshot.metadata.index);
    this.pendingSnapshot = snapshot;
  }

  /** Discard entries up to `index` (<= applied) behind a snapshot the application made. */
  compact(index: number, data: Uint8Array): Snapshot {
    assert(index <= this.applied && index <= this.stableIndex, "compacting beyond applied or stable");
    const term = this.term(index);
    assert(term !== undefined, () => `compact: no term at ${index}`);
    const snapshot: Snapshot = { metadata: { index, term, confState: this.confStateAt(index) }, data };
    this.entries = this.entries.slice(index - this.snapshot.metadata.index);
    this.confEntries = this.confEntries.filter((c) => c.index > index);
    this.snapshot = snapshot;
    return snapshot;
  }

  /** Entries after `stableIndex`: what the next Ready must have the driver persist. */
  unstableEntries(): Entry[] {
    const lo = Math.max(this.stableIndex + 1, this.firstIndex());
    return lo > this.lastIndex() ? [] : this.slice(lo, this.lastIndex());
  }

  stableTo(index: number, term: number): void {
    // The log may have been truncated and rewritten between ready() and advance(): only a matching
    // (index, term) proves the persisted entries are the ones still in the log.
    if (this.matchTerm(index, term) && index > this.stableIndex) this.stableIndex = index;
  }

  /** Entries to apply: committed but not applied (all durable once the Ready carrying them is persisted). */
  nextCommittedEntries(): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    return lo > this.committed ? [] : this.slice(lo, this.committed);
  }

  /**
   * Fast backtracking (etcd findConflictByTerm): the largest index <= `index` whose term is <= `term`,
   * with its term. Every index above it has a term > `term`, so it cannot match the other side.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapshot.metadata.index; i--) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
    }
    return { index: i, term: this.term(i) ?? 0 };
  }

  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm() || (lastTerm === this.lastTerm() && lastIndex >= this.lastIndex());
  }
}

/** Bytes an entry adds to messages and memory beyond its fixed fields: what the byte bounds count. */
export function payloadBytes(e: Pick<Entry, "data" | "confChange">): number {
  return e.data.length + (e.confChange?.context.length ?? 0);
}

export function sumPayloadBytes(entries: readonly Entry[]): number {
  let sum = 0;
  for (const e of entries) sum += payloadBytes(e);
  return sum;
}
