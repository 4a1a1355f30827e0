import type { ConfState } from "../../cluster/raft/core/index.js";
import type { RegisterOp } from "./linearizability.js";

/** A checker found the run unsafe or not live; `checker` names which property failed. */
export class SimViolation extends Error {
  constructor(
    readonly checker: string,
    message: string,
  ) {
    super(`${checker}: ${message}`);
    this.name = "SimViolation";
  }
}

export interface LogView {
  id: string;
  /** Snapshot index (term known from here on). */
  first: number;
  last: number;
  termAt(index: number): number | undefined;
}

/**
 * The raft safety properties (raft paper fig. 3), checked against every event the simulator sees:
 * election safety, log matching, leader completeness, state machine safety; plus acknowledged writes.
 */
export class SafetyChecker {
  private readonly leaderByTerm = new Map<number, string>();
  /** The committed sequence as first applied by anyone: index -> identity. */
  private readonly committed: (string | undefined)[] = [];
  private readonly committedTerm: (number | undefined)[] = [];
  /**
   * Per committed index: the highest leader term seen when it was first applied. The leader that
   * committed it led a term no higher, so every leader of a later term must hold it (leader completeness
   * binds leaders of later terms only: a paused term-1 leader may resume after term 2 committed entries).
   */
  private readonly committedBy: (number | undefined)[] = [];
  private highestLeaderTerm = 0;
  private readonly valueIndex = new Map<string, number>();
  /** Committed membership changes: [index, voters], in index order. */
  private readonly confs: [number, string[]][] = [];

  constructor(private readonly founders: readonly string[]) {}

  leaderCount(): number {
    return this.leaderByTerm.size;
  }

  /**
   * Election safety, then leader completeness: a new leader holds every entry known committed before its
   * term began.
   */
  onLeader(id: string, term: number, termAt: (i: number) => number | undefined, snapshotIndex: number): void {
    const other = this.leaderByTerm.get(term);
    if (other !== undefined && other !== id) {
      throw new SimViolation("election-safety", `two leaders in term ${term}: ${other} and ${id}`);
    }
    this.leaderByTerm.set(term, id);
    this.highestLeaderTerm = Math.max(this.highestLeaderTerm, term);
    for (let i = snapshotIndex + 1; i < this.committed.length; i++) {
      const t = this.committedTerm[i];
      if (t === undefined || term <= this.committedBy[i]!) continue;
      if (termAt(i) !== t) {
        throw new SimViolation(
          "leader-completeness",
          `leader ${id} of term ${term} lacks committed entry ${i} (term ${t}; has ${termAt(i) ?? "none"})`,
        );
      }
    }
  }

  /**
   * State machine safety: every node applies the same entry (`what`: "N:key=value" or "C:type:node") with
   * the same term at every index. True if first applied here.
   */
  onApplied(id: string, index: number, term: number, what: string): boolean {
    const got = `${term}:${what}`;
    const want = this.committed[index];
    if (want === undefined) {
      this.committed[index] = got;
      this.committedTerm[index] = term;
      this.committedBy[index] = Math.max(this.highestLeaderTerm, term);
      if (what.startsWith("N:")) this.valueIndex.set(what.slice(2), index);
      return true;
    }
    if (want !== got) {
      throw new SimViolation(
        "state-machine-safety",
        `${id} applied ${got} at ${index}, another node applied ${want}`,
      );
    }
    return false;
  }

  /** A membership change at `index` was applied (committed) with the resulting configuration `cs`. */
  onConfCommitted(index: number, cs: ConfState): void {
    if (this.confs.some(([i]) => i === index)) return;
    this.confs.push([index, [...cs.voters]]);
    this.confs.sort((a, b) => a[0] - b[0]);
  }

  /** The voters of the latest committed configuration at or before `index`. */
  committedVoters(index: number): string[] {
    let voters: readonly string[] = this.founders;
    for (const [i, v] of this.confs) if (i <= index) voters = v;
    return [...voters];
  }

  /** The key-value state after applying the committed sequence up to `index` (snapshot content checker). */
  stateAt(index: number): Map<string, string> {
    const kv = new Map<string, string>();
    for (let i = 1; i <= index && i < this.committed.length; i++) {
      const c = this.committed[i];
      if (c === undefined) continue;
      const at = c.indexOf(":N:");
      if (at < 0) continue;
      const text = c.slice(at + 3);
      const eq = text.indexOf("=");
      kv.set(text.slice(0, eq), text.slice(eq + 1));
    }
    return kv;
  }

  onSnapshotRestored(id: string, index: number, term: number): void {
    const t = this.committedTerm[index];
    if (index > 0 && t !== undefined && t !== term) {
      throw new SimViolation(
        "state-machine-safety",
        `${id} restored a snapshot at ${index} term ${term}, committed term ${t}`,
      );
    }
  }

  /** Log matching, part 2: logs that agree on an entry agree on everything before it. */
  checkLogMatching(logs: readonly LogView[]): void {
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const x = logs[a]!;
        const y = logs[b]!;
        const lo = Math.max(x.first, y.first);
        let i = Math.min(x.last, y.last);
        while (i >= lo && x.termAt(i) !== y.termAt(i)) i--;
        for (; i >= lo; i--) {
          if (x.termAt(i) !== y.termAt(i)) {
            throw new SimViolation(
              "log-matching",
              `${x.id} and ${y.id} agree on a later entry but differ at ${i} (terms ${x.termAt(i)} vs ${y.termAt(i)})`,
            );
          }
        }
      }
    }
  }

  /** Every acknowledged write is in the committed sequence (at the index it was acknowledged for). */
  checkAckedWritesApplied(history: readonly RegisterOp[]): void {
    for (const op of history) {
      if (op.kind !== "write" || op.respondedAt === Infinity) continue;
      const at = this.valueIndex.get(`${op.key}=${op.value}`);
      if (at === undefined || this.committed[at] === undefined) {
        throw new SimViolation(
          "acked-write-lost",
          `acknowledged write ${op.key}=${op.value} was never applied`,
        );
      }
    }
  }
}
