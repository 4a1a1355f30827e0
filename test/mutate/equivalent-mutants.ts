import type { Mutant, MutatorName } from "./mutants.js";

/**
 * Mutants that cannot change behaviour (equivalent mutants), left out of the score with the reason.
 * Matched by file, the trimmed source line, mutator, original and replacement (not by line number, so
 * the list survives edits elsewhere in the file). Keep it short and honest: a mutant that a test could
 * kill does not belong here.
 */
export interface EquivalentMutant {
  file: string;
  /** The enclosing function or method, as Mutant.scope. */
  scope: string;
  lineText: string;
  /**
   * The mutants of that line that are equivalent: [mutator, original (whitespace runs as one space),
   * replacement], with where the edit starts in the trimmed line when the same edit occurs twice on it.
   */
  edits: [MutatorName, string, string, number?][];
  reason: string;
}

export const EQUIVALENT_MUTANTS: EquivalentMutant[] = [
  {
    file: "cluster/raft/core/read-only.ts",
    scope: "ReadOnly.size",
    lineText: "size(): number {",
    edits: [["BlockStatement", "{ return this.queue.length; }", "{}"]],
    reason: "ReadOnly.size() is called nowhere (dead code in the core)",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.handleAppend",
    lineText: "const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);",
    edits: [["MethodExpression", "min", "max"]],
    reason: "findConflictByTerm() starts from Math.min(index, lastIndex()) itself",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.syncProgress",
    lineText:
      "if (this.leadTransferee !== null && !cs.voters.includes(this.leadTransferee)) this.leadTransferee = null;",
    edits: [
      [
        "ConditionalExpression",
        "this.leadTransferee !== null && !cs.voters.includes(this.leadTransferee)",
        "true",
      ],
      [
        "ConditionalExpression",
        "this.leadTransferee !== null && !cs.voters.includes(this.leadTransferee)",
        "false",
      ],
      ["LogicalOperator", "&&", "||"],
      ["EqualityOperator", "!==", "==="],
      ["ConditionalExpression", "this.leadTransferee !== null", "true"],
      ["ConditionalExpression", "this.leadTransferee !== null", "false"],
      [
        "BooleanLiteral",
        "!cs.voters.includes(this.leadTransferee)",
        "cs.voters.includes(this.leadTransferee)",
      ],
    ],
    reason:
      "leadTransferee is always null here: becomeLeader() clears it before calling syncProgress(), and the other caller, a ConfChange append, is refused while a transfer is in progress; so every edit at most assigns null to null",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.maybeCommit",
    lineText: "if (voters.length === 0) return false;",
    edits: [
      ["ConditionalExpression", "voters.length === 0", "false"],
      ["BooleanLiteral", "false", "true"],
    ],
    reason:
      "a leader always has at least one voter (the last voter cannot be removed, and a node with an empty configuration never campaigns), so this return is never taken",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.onCommitAdvanced",
    lineText: "if (this.log.term(this.log.committed) === this.term && this.pendingReads.length > 0) {",
    edits: [
      [
        "ConditionalExpression",
        "this.log.term(this.log.committed) === this.term && this.pendingReads.length > 0",
        "true",
      ],
      ["LogicalOperator", "&&", "||"],
      ["ConditionalExpression", "this.log.term(this.log.committed) === this.term", "true"],
      ["EqualityOperator", ">", ">="],
      ["ConditionalExpression", "this.pendingReads.length > 0", "true"],
    ],
    reason:
      "called only after maybeCommit() committed an entry of the leader's own term, so the term test always holds (except under the test-only commitOldTermEntries bug flag), and with no pending reads the block loops over an empty list",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.checkInvariants",
    lineText: 'if (this.role === "leader") {',
    edits: [
      ["ConditionalExpression", 'this.role === "leader"', "true"],
      ["ConditionalExpression", 'this.role === "leader"', "false"],
      ["EqualityOperator", "===", "!=="],
      ["StringLiteral", '"leader"', '""'],
      [
        "BlockStatement",
        "{ for (const [id, pr] of this.progress) { assert(pr.match < pr.next, () => `progress of ${id}: match ${pr.match} >= next ${pr.next}`); assert(pr.match <= log.lastIndex(), () => `progress of ${id}: match beyond last index`); } }",
        "{}",
      ],
    ],
    reason:
      "the block only runs internal asserts over the progress map, which is empty unless leader (becomeFollower clears it and only a follower campaigns): running it for other roles or not at all changes nothing a correct core does",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    scope: "RaftLog.unstableEntries",
    lineText: "return lo > this.lastIndex() ? [] : this.slice(lo, this.lastIndex());",
    edits: [["ConditionalExpression", "lo > this.lastIndex()", "false"]],
    reason:
      "lo >= firstIndex here, so slice(lo, lastIndex) with lo > lastIndex passes its range check and returns [] too",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    scope: "RaftLog.nextCommittedEntries",
    lineText: "return lo > this.committed ? [] : this.slice(lo, this.committed);",
    edits: [["ConditionalExpression", "lo > this.committed", "false"]],
    reason: "lo >= firstIndex and commit <= lastIndex, so slice(lo, commit) with lo > commit returns [] too",
  },
  {
    file: "cluster/raft/core/progress.ts",
    scope: "Progress.sentEntries",
    lineText: '} else if (this.state === "probe") {',
    edits: [["ConditionalExpression", 'this.state === "probe"', "true"]],
    reason:
      "sentEntries() follows an append, and maybeSendAppend() sends none in snapshot state (paused), so past the replicate branch the state is always probe",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.campaign",
    lineText: 'if (kind === "preVote") this.campaign("vote");',
    edits: [["StringLiteral", '"vote"', '""']],
    reason: 'as in tickElection: "" runs the same real election as "vote"',
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.stepCandidate",
    lineText: 'if (this.role === "preCandidate") this.campaign("vote");',
    edits: [["StringLiteral", '"vote"', '""']],
    reason: 'as in tickElection: "" runs the same real election as "vote"',
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.tickElection",
    lineText: 'this.campaign(this.cfg.preVote ? "preVote" : "vote");',
    edits: [["StringLiteral", '"vote"', '""']],
    reason:
      'campaign() tests its kind only against "preVote" and "transfer", so "" runs the same real election as "vote"',
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.advance",
    lineText:
      "if (this.log.stableIndex < idx && this.log.snapshot.metadata.index >= idx) this.log.stableIndex = idx;",
    edits: [
      ["EqualityOperator", "<", "<="],
      [
        "ConditionalExpression",
        "this.log.stableIndex < idx && this.log.snapshot.metadata.index >= idx",
        "true",
      ],
      ["LogicalOperator", "&&", "||"],
      ["ConditionalExpression", "this.log.stableIndex < idx", "true"],
      ["ConditionalExpression", "this.log.snapshot.metadata.index >= idx", "true"],
    ],
    reason:
      "here stableIndex <= idx <= the log's snapshot index always (restore() lowers stableIndex to at most the snapshot index, only advance() raises it, and a snapshot is only ever replaced by a later one), so the condition only tells apart stableIndex == idx, where the assignment writes the value already there",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.stepTaken",
    lineText: "m.type === MessageType.Append ||",
    edits: [
      [
        "ConditionalExpression",
        "m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.Snapshot",
        "false",
      ],
      ["LogicalOperator", "||", "&&"],
      ["ConditionalExpression", "m.type === MessageType.Append || m.type === MessageType.Heartbeat", "false"],
      ["ConditionalExpression", "m.type === MessageType.Append", "false"],
    ],
    reason:
      "these edits only send some of Append, Heartbeat and Snapshot of a newer term to becomeFollower(term, null) instead of (term, from); the node is then a follower and stepFollower sets lead = from for all three before anything reads it",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.stepTaken",
    lineText: "m.type === MessageType.Heartbeat ||",
    edits: [
      ["LogicalOperator", "||", "&&"],
      ["ConditionalExpression", "m.type === MessageType.Heartbeat", "false"],
    ],
    reason: "as the line before",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.stepTaken",
    lineText: "m.type === MessageType.Snapshot",
    edits: [["ConditionalExpression", "m.type === MessageType.Snapshot", "false"]],
    reason: "as the lines before",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode",
    lineText: "private pendingReads: { from: string; context: Uint8Array }[] = [];",
    edits: [["ArrayDeclaration", "[]", '["Stryker was here"]']],
    reason:
      "pendingReads is read only by a leader, and becomeLeader() empties it before any read can reach it",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.hasReady",
    lineText:
      "if (ss.leader !== this.prevSoftState.leader || ss.role !== this.prevSoftState.role) return true;",
    edits: [["ConditionalExpression", "ss.leader !== this.prevSoftState.leader", "false"]],
    reason:
      "the known leader never changes alone: a new leader is learnt from an append, heartbeat or snapshot, all answered (a message), and it is forgotten only with a new term (hard state) or a role change",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    scope: "RaftLog.term",
    lineText: "if (index < snap.index || index > this.lastIndex()) return undefined;",
    edits: [["EqualityOperator", "<", "<="]],
    reason: "index === snap.index already returned the snapshot's term on the line before",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    scope: "RaftLog.maybeAppend",
    lineText:
      "if (t === undefined && e.index <= this.snapshot.metadata.index) continue; // compacted: committed, matches",
    edits: [
      ["ConditionalExpression", "t === undefined && e.index <= this.snapshot.metadata.index", "false"],
      ["EqualityOperator", "===", "!=="],
      ["ConditionalExpression", "t === undefined", "true"],
      ["ConditionalExpression", "t === undefined", "false"],
      ["EqualityOperator", "<=", "<"],
      ["ConditionalExpression", "e.index <= this.snapshot.metadata.index", "false"],
    ],
    reason:
      "e.index <= snapshot index never holds here: handleAppend answers appends below commit early, so every entry is after commit >= snapshot index; each edit listed leaves the condition false",
  },
  {
    file: "cluster/raft/core/progress.ts",
    scope: "Progress.becomeProbe",
    lineText: 'if (this.state === "snapshot") {',
    edits: [["ConditionalExpression", 'this.state === "snapshot"', "true"]],
    reason:
      "outside snapshot state pendingSnapshot is 0 (resetState), so max(match + 1, 0 + 1) is match + 1, as the else branch",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    scope: "RaftLog.stableTo",
    lineText: "if (this.matchTerm(index, term) && index > this.stableIndex) this.stableIndex = index;",
    edits: [["EqualityOperator", ">", ">="]],
    reason: "when index equals stableIndex the assignment writes the value already there",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.hasReady",
    lineText: "this.log.pendingSnapshot !== null ||",
    edits: [["ConditionalExpression", "this.log.pendingSnapshot !== null", "false"]],
    reason:
      "a pending snapshot is set only by handleSnapshot, which always queues the AppendResp that answers it, so msgs.length > 0 makes hasReady() true whenever this term would",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    scope: "RaftNode.becomeFollower",
    lineText: "this.pendingReads = [];",
    edits: [["ArrayDeclaration", "[]", '["Stryker was here"]']],
    reason:
      "pendingReads is read only by a leader, and becomeLeader() empties it again before any read can reach it",
  },
];

/**
 * Asserts on the core's internal state (TigerBeetle style) whose condition holds in every state the
 * public API can reach (no message, persisted state, config or call sequence breaks them; those that can
 * be reached that way are NOT listed and stay mutated). Every mutant inside such a condition is left
 * out: a weakened check cannot change behaviour, and a strengthened one fails at once in any test, so
 * neither says anything about the tests. Matched by file and the start of the assert's message.
 */
export const INTERNAL_ASSERTS: { file: string; message: string; reason: string }[] = [
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"uncommitted bytes below zero"',
    reason:
      "the leader adds each entry's bytes when it appends and subtracts them once, when commit passes it",
  },
  {
    file: "cluster/raft/core/progress.ts",
    message: '"progress next must be >= 1"',
    reason: "every Progress is built with lastIndex() + 1 >= 1",
  },
  {
    file: "cluster/raft/core/progress.ts",
    message: '"append sent into a full in-flight window"',
    reason: "sentEntries() runs only after isPaused() said the window has room",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`no entry at ${index}`",
    reason: "entry() is called only for indexes in [firstIndex, lastIndex], where entries are contiguous",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`slice [${lo}, ${hi}] out of range`",
    reason: "every caller bounds lo and hi by firstIndex and lastIndex",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`append at ${e.index}, last is",
    reason: "the leader appends at lastIndex() + 1 only",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: '"append with a term below the last term"',
    reason: "the leader appends at its own term, never below its last log term (checkInvariants)",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`conflict at ${first} would truncate committed entries",
    reason:
      "a conflict lies after the append's index, which is >= commit (handleAppend answers lower ones early)",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: '"truncating into the snapshot"',
    reason: "truncation starts after the append's index >= commit >= the snapshot index",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`commit ${index} beyond last index ${this.lastIndex()}`",
    reason: "commitTo() callers bound the index by the last index or an index just matched",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: '"restoring a snapshot at or below commit"',
    reason: "handleSnapshot() answers snapshots at or below commit before restoring",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: '"compacting beyond applied or stable"',
    reason: "RaftNode.compact() refuses index > applied, and applied <= stable after every advance()",
  },
  {
    file: "cluster/raft/core/raft-log.ts",
    message: "`compact: no term at ${index}`",
    reason: "index is in (snapshot index, applied], all in the log",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"message to self in Ready"',
    reason: "send() already refuses a message to self",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"term went backwards"',
    reason: "becomeFollower() is called with this.term or a larger message term only",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"leader cannot become pre-candidate"',
    reason: "campaign() runs from tickElection (never a leader) and TimeoutNow (followers only)",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"leader cannot become candidate"',
    reason: "as above",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"only a candidate becomes leader"',
    reason: "becomeLeader() is called right after winning as a candidate",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"only the leader appends"',
    reason: "appendEntry() callers check the role first (mustAcceptProposal, becomeLeader)",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"sending a message to self"',
    reason:
      "messages go to members other than self, the leader (never self while following) or a sender (never self)",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"applied > committed"',
    reason: "checkInvariants(): applied moves only to entries handed out as committed",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"committed > last index"',
    reason: "checkInvariants(): commitTo() bounds commit",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"stable > last index"',
    reason: "checkInvariants(): truncation lowers stableIndex",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"leader does not know itself as leader"',
    reason: "checkInvariants(): becomeLeader sets both",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: '"candidate did not vote for itself"',
    reason: "checkInvariants(): becomeCandidate sets both",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: "`progress of ${id}: match ${pr.match} >= next",
    reason: "checkInvariants(): maybeUpdate keeps next > match",
  },
  {
    file: "cluster/raft/core/raft-node.ts",
    message: "`progress of ${id}: match beyond last index`",
    reason: "checkInvariants(): acks beyond the last index are stopped before they reach progress",
  },
];

export function equivalentReason(m: Mutant): string | undefined {
  if (m.inAssert !== null) {
    const a = INTERNAL_ASSERTS.find((x) => x.file === m.file && m.inAssert!.includes(x.message));
    if (a !== undefined) return `internal assert (${a.message}): ${a.reason}`;
  }
  return EQUIVALENT_MUTANTS.find(
    (e) =>
      e.file === m.file &&
      e.scope === m.scope &&
      e.lineText === m.lineText &&
      e.edits.some(
        ([mutator, original, replacement, at]) =>
          mutator === m.mutator &&
          original === m.original.replace(/\s+/g, " ") &&
          replacement === m.replacement &&
          (at === undefined || at === m.lineOffset),
      ),
  )?.reason;
}

/** Entries of both lists that match no mutant any more (the code moved on): to be removed or updated. */
export function staleEntries(all: Mutant[]): string[] {
  const stale: string[] = [];
  for (const a of INTERNAL_ASSERTS) {
    if (!all.some((m) => m.file === a.file && m.inAssert?.includes(a.message)))
      stale.push(`internal assert ${a.file} ${a.message}`);
  }
  for (const e of EQUIVALENT_MUTANTS) {
    if (!all.some((m) => equivalentReason(m) === e.reason && m.file === e.file && m.scope === e.scope))
      stale.push(`equivalent mutant ${e.file} ${e.scope}: ${e.lineText}`);
  }
  return stale;
}
