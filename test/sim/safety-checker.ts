import { EntryType, type Entry } from "../../cluster/raft/core/index.js";
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

const dec = new TextDecoder();

/** What an entry is, independent of where it sits. */
function identity(e: Entry): string {
  if (e.type === EntryType.ConfChange) return `${e.term}:C:${e.confChange!.type}:${e.confChange!.nodeId}`;
  return `${e.term}:N:${dec.decode(e.data)}`;
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
  private readonly valueIndex = new Map<string, number>();
  /** (index, term) -> identity of every entry ever made durable anywhere. */
  private readonly persisted = new Map<string, string>();

  leaderCount(): number {
    return this.leaderByTerm.size;
  }

  /** Election safety, then leader completeness: the new leader holds every entry known committed. */
  onLeader(id: string, term: number, termAt: (i: number) => number | undefined, snapshotIndex: number): void {
    const other = this.leaderByTerm.get(term);
    if (other !== undefined && other !== id) {
      throw new SimViolation("election-safety", `two leaders in term ${term}: ${other} and ${id}`);
    }
    this.leaderByTerm.set(term, id);
    for (let i = snapshotIndex + 1; i < this.committed.length; i++) {
      const t = this.committedTerm[i];
      if (t === undefined) continue;
      if (termAt(i) !== t) {
        throw new SimViolation(
          "leader-completeness",
          `leader ${id} of term ${term} lacks committed entry ${i} (term ${t}; has ${termAt(i) ?? "none"})`,
        );
      }
    }
  }

  /** Log matching, part 1: an (index, term) pair names exactly one entry. */
  onPersisted(id: string, entries: readonly Entry[]): void {
    for (const e of entries) {
      const key = `${e.index}/${e.term}`;
      const want = this.persisted.get(key);
      const got = identity(e);
      if (want === undefined) this.persisted.set(key, got);
      else if (want !== got) {
        throw new SimViolation(
          "log-matching",
          `${id} stored ${got} at ${key} where another node stored ${want}`,
        );
      }
    }
  }

  /** State machine safety: every node applies the same entry at every index. True if first applied here. */
  onApplied(id: string, e: Entry): boolean {
    const got = identity(e);
    const want = this.committed[e.index];
    if (want === undefined) {
      this.committed[e.index] = got;
      this.committedTerm[e.index] = e.term;
      if (e.type === EntryType.Normal && e.data.length > 0) this.valueIndex.set(dec.decode(e.data), e.index);
      return true;
    }
    if (want !== got) {
      throw new SimViolation(
        "state-machine-safety",
        `${id} applied ${got} at ${e.index}, another node applied ${want}`,
      );
    }
    return false;
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
