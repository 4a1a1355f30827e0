import { isNodeId, NODE_ID_RULE } from "../../node-id.js";
import { assert } from "./assert.js";
import { Progress } from "./progress.js";
import { payloadBytes, RaftLog, sumPayloadBytes } from "./raft-log.js";
import { ReadOnly } from "./read-only.js";
import {
  ConfChangeType,
  DEFAULT_INFLIGHT_BYTES_MAX,
  DEFAULT_PROMOTE_LAG_MAX,
  DEFAULT_UNCOMMITTED_BYTES_MAX,
  EntryType,
  MessageType,
  RaftError,
  RefusalKinds,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type PersistedState,
  type ProposalPosition,
  type RaftConfig,
  type RaftNodeApi,
  type RaftRefusalReason,
  type RaftStatus,
  type ReadState,
  type Refusal,
  type RefusalKind,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from "./types.js";
import { validateMessage } from "./validate-message.js";

/** A Vote message whose context is this marks a leadership transfer: it bypasses the leader lease. */
const TRANSFER_CONTEXT = new Uint8Array([0x74]);
/** Answers to this node's own requests (the leaderAdoptsResponseTerm bug mishandles their terms). */
const RESPONSES: ReadonlySet<MessageType> = new Set([
  MessageType.PreVoteResp,
  MessageType.VoteResp,
  MessageType.AppendResp,
  MessageType.HeartbeatResp,
]);
/** Bound on ReadIndex requests waiting at a leader. */
const READ_REQUESTS_MAX = 4096;
/** Bound on reads waiting for the leader's first commit in its term. */
const PENDING_READS_MAX = 1024;
/**
 * Messages only a member of this node's configuration sends it: answers to what this node sent its
 * members, and reads forwarded by them. Appends and vote requests are not here: a node's configuration
 * may lag the group's, so their sender may be a member it does not know of yet.
 */
const MEMBERS_ONLY: ReadonlySet<MessageType> = new Set([
  MessageType.AppendResp,
  MessageType.HeartbeatResp,
  MessageType.PreVoteResp,
  MessageType.VoteResp,
  MessageType.ReadIndex,
]);

/**
 * The raft consensus core as a pure state machine (etcd-io/raft RawNode): no IO, no clock, no randomness
 * of its own. See types.ts for the Ready contract. Membership: single-server changes take effect when
 * the entry is APPENDED to a node's log (raft thesis §4.1); a leader proposes a change only when the
 * previous one is committed and it has committed an entry of its own term; a leader that removes itself
 * keeps replicating and steps down once the change is committed.
 */
export class RaftNode implements RaftNodeApi {
  readonly id: string;
  private readonly cfg: RaftConfig;
  private readonly inflightBytesMax: number;
  private readonly uncommittedBytesMax: number;
  private readonly promoteLagMax: number;
  private readonly snapshotTimeoutTicks: number;
  private readonly log: RaftLog;

  private term: number;
  private vote: string | null;
  private lead: string | null = null;
  private role: Role = "follower";

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private votes = new Map<string, boolean>();
  private progress = new Map<string, Progress>();
  private leadTransferee: string | null = null;
  private readOnly = new ReadOnly(READ_REQUESTS_MAX);
  /** ReadIndex requests a fresh leader holds until it has committed an entry of its term. */
  private pendingReads: { from: string; context: Uint8Array }[] = [];

  /** Leader only: payload bytes of the entries after commit (uncommittedBytesMax bounds proposals). */
  private uncommittedBytes = 0;
  private readonly refused = Object.fromEntries(RefusalKinds.map((k) => [k, 0])) as Record<
    RefusalKind,
    number
  >;

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private readyInProgress = false;

  constructor(config: RaftConfig, persisted: PersistedState) {
    checkConfig(config);
    this.cfg = config;
    this.id = config.id;
    this.inflightBytesMax = config.inflightBytesMax ?? DEFAULT_INFLIGHT_BYTES_MAX;
    this.uncommittedBytesMax = config.uncommittedBytesMax ?? DEFAULT_UNCOMMITTED_BYTES_MAX;
    this.promoteLagMax = config.promoteLagMax ?? DEFAULT_PROMOTE_LAG_MAX;
    this.snapshotTimeoutTicks = config.snapshotTimeoutTicks ?? config.electionTicks;
    const snap = persisted.snapshot ?? {
      metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } },
      data: new Uint8Array(0),
    };
    const hs = persisted.hardState;
    this.log = new RaftLog(snap, persisted.entries, hs.commit, config.applied ?? snap.metadata.index);
    if (hs.term >= this.log.lastTerm()) {
      this.term = hs.term;
      this.vote = hs.vote;
    } else {
      // A crash between persisting entries and persisting the hard state (Ready steps 1b and 1c): the
      // node accepted a leader of the newer term but never made that term durable. It cannot have voted
      // in it (a vote leaves only after its hard state is durable), so the newer term with no vote is safe.
      this.term = this.log.lastTerm();
      this.vote = null;
    }
    this.prevHardState = { term: hs.term, vote: hs.vote, commit: hs.commit };
    this.prevSoftState = { leader: null, role: "follower" };
    this.resetRandomizedElectionTimeout();
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  step(message: Message): Refusal | null {
    const refusal = validateMessage(message) ?? this.stepChecked(message);
    if (refusal !== null) this.refused[refusal.kind] += 1;
    this.checkInvariants();
    return refusal;
  }

  propose(data: Uint8Array): ProposalPosition {
    if (!(data instanceof Uint8Array))
      throw new RaftError("BAD_ARGUMENT", "proposal data must be a Uint8Array");
    const entry = { type: EntryType.Normal, data, confChange: null, confState: null };
    this.mustAcceptProposal(payloadBytes(entry));
    return this.appendEntry(entry);
  }

  proposeConfChange(change: ConfChange): ProposalPosition {
    this.mustAcceptProposal(0);
    if (this.log.lastConfIndex() > this.log.committed && !this.cfg.bugs?.concurrentConfChanges) {
      throw new RaftError(
        "CONF_CHANGE_PENDING",
        "the previous membership change is not committed yet",
        "CHANGE_UNCOMMITTED",
      );
    }
    if (this.log.term(this.log.committed) !== this.term) {
      // Raft thesis errata: a new leader must commit an entry of its term before changing membership.
      throw new RaftError(
        "CONF_CHANGE_PENDING",
        "leader has not committed an entry of its term yet",
        "TERM_UNCOMMITTED",
      );
    }
    const next = applyConfChange(this.log.confState(), change);
    if (change.type === ConfChangeType.PromoteLearner) this.mustBeCaughtUp(change.nodeId);
    const entry = {
      type: EntryType.ConfChange,
      data: new Uint8Array(0),
      confChange: { type: change.type, nodeId: change.nodeId, context: change.context },
      confState: next,
    };
    // The context counts towards uncommittedBytesMax like proposal data.
    this.mustFitUncommitted(payloadBytes(entry));
    return this.appendEntry(entry);
  }

  readIndex(context: Uint8Array): void {
    if (!(context instanceof Uint8Array) || context.length === 0) {
      throw new RaftError("BAD_ARGUMENT", "readIndex context must be a non-empty Uint8Array");
    }
    if (this.role === "leader") {
      this.leaderReadIndex(this.id, context);
    } else if (this.lead !== null) {
      this.send({ ...this.blank(MessageType.ReadIndex, this.lead), context });
    }
    // No known leader: dropped; the caller retries after a timeout.
  }

  transferLeadership(to: string): void {
    if (this.role !== "leader") throw new RaftError("NOT_LEADER", "only the leader can transfer leadership");
    if (to === this.id) return;
    if (!this.isVoter(to)) throw new RaftError("BAD_ARGUMENT", `transfer target ${to} is not a voter`);
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.send(this.blank(MessageType.TimeoutNow, to));
    else this.sendAppend(to);
  }

  reportSnapshot(to: string, outcome: "delivered" | "failed"): void {
    const pr = this.progress.get(to); // empty unless leader
    if (pr === undefined || pr.state !== "snapshot") return;
    // etcd ReportSnapshot: probe from just after the snapshot (delivered) or from the last known match
    // (failed), and wait for the next heartbeat answer before sending, so a failing link is not hammered.
    if (outcome === "failed") pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true;
  }

  compact(index: number, data: Uint8Array): Snapshot {
    if (
      !Number.isSafeInteger(index) ||
      index <= this.log.snapshot.metadata.index ||
      index > this.log.applied
    ) {
      throw new RaftError(
        "BAD_ARGUMENT",
        `compact index ${index} must be in (${this.log.snapshot.metadata.index}, ${this.log.applied}]`,
      );
    }
    if (!(data instanceof Uint8Array))
      throw new RaftError("BAD_ARGUMENT", "snapshot data must be a Uint8Array");
    return this.log.compact(index, data);
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    if (this.readyInProgress) return false;
    const ss = this.softState();
    if (ss.leader !== this.prevSoftState.leader || ss.role !== this.prevSoftState.role) return true;
    if (!sameHardState(this.hardState(), this.prevHardState)) return true;
    return (
      this.log.pendingSnapshot !== null ||
      this.log.stableIndex < this.log.lastIndex() ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.committed > this.log.applied
    );
  }

  ready(): Ready | null {
    if (this.readyInProgress) throw new RaftError("BAD_STATE", "ready() called again before advance()");
    if (!this.hasReady()) return null;
    const ss = this.softState();
    const hs = this.hardState();
    const softChanged = ss.leader !== this.prevSoftState.leader || ss.role !== this.prevSoftState.role;
    const hardChanged = !sameHardState(hs, this.prevHardState);
    const entries = this.log.unstableEntries();
    const rd: Ready = {
      softState: softChanged ? ss : null,
      hardState: hardChanged ? (this.cfg.bugs?.voteBeforePersist ? { ...hs, vote: null } : hs) : null,
      snapshot: this.log.pendingSnapshot,
      entries,
      messages: this.msgs,
      committedEntries: this.log.nextCommittedEntries(),
      readStates: this.readStates,
      // The durability rule on `Ready`: a new term or vote, entries or a snapshot; never commit alone.
      mustSync:
        (entries.length > 0 && !this.cfg.bugs?.entriesWithoutSync) ||
        this.log.pendingSnapshot !== null ||
        hs.term !== this.prevHardState.term ||
        hs.vote !== this.prevHardState.vote,
    };
    for (const m of rd.messages) assert(m.to !== this.id, "message to self in Ready");
    this.msgs = [];
    this.readStates = [];
    this.prevSoftState = ss;
    this.prevHardState = hs;
    this.readyInProgress = true;
    return rd;
  }

  advance(rd: Ready): void {
    if (!this.readyInProgress) throw new RaftError("BAD_STATE", "advance() without a ready()");
    this.readyInProgress = false;
    if (rd.snapshot !== null) {
      const idx = rd.snapshot.metadata.index;
      if (this.log.pendingSnapshot === rd.snapshot) this.log.pendingSnapshot = null;
      if (this.log.stableIndex < idx && this.log.snapshot.metadata.index >= idx) this.log.stableIndex = idx;
      this.log.applied = Math.max(this.log.applied, idx);
    }
    const last = rd.entries[rd.entries.length - 1];
    if (last !== undefined) this.log.stableTo(last.index, last.term);
    const applied = rd.committedEntries[rd.committedEntries.length - 1];
    if (applied !== undefined) {
      assert(applied.index <= this.log.committed, "applied beyond commit");
      this.log.applied = Math.max(this.log.applied, applied.index);
    }
    if (this.role === "leader") {
      // The leader counts itself only for what it has persisted.
      if (this.maybeCommit()) this.bcastAppend();
    }
    this.checkInvariants();
  }

  status(): RaftStatus {
    const progress: RaftStatus["progress"] = {};
    for (const [id, pr] of this.progress) {
      progress[id] = {
        match: pr.match,
        next: pr.next,
        state: pr.state,
        inflight: pr.inflights.length,
        inflightBytes: pr.inflightBytes,
        recentActive: pr.recentActive,
      };
    }
    const cs = this.log.confState();
    return {
      id: this.id,
      role: this.role,
      leader: this.lead,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      confState: { voters: [...cs.voters], learners: [...cs.learners] },
      progress,
      leadTransferee: this.leadTransferee,
      uncommittedBytes: this.uncommittedBytes,
      refused: { ...this.refused },
    };
  }

  /** Term of the entry at `index` in this node's log (undefined if compacted or absent); for checkers. */
  termAt(index: number): number | undefined {
    return this.log.term(index);
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(term: number, lead: string | null): void {
    if (term !== this.term) {
      assert(term > this.term, "term went backwards");
      this.term = term;
      this.vote = null;
    }
    this.role = "follower";
    this.lead = lead;
    this.resetTimers();
    this.progress.clear();
    this.leadTransferee = null;
    this.readOnly = new ReadOnly(READ_REQUESTS_MAX);
    this.pendingReads = [];
    this.uncommittedBytes = 0;
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "leader cannot become pre-candidate");
    // Pre-vote changes neither term nor vote: a partitioned node cannot inflate terms.
    this.role = "preCandidate";
    this.lead = null;
    this.votes = new Map();
    this.resetTimers();
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "leader cannot become candidate");
    this.term += 1;
    this.vote = this.id;
    this.role = "candidate";
    this.lead = null;
    this.votes = new Map();
    this.resetTimers();
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "only a candidate becomes leader");
    this.role = "leader";
    this.lead = this.id;
    this.resetTimers();
    this.progress.clear();
    this.leadTransferee = null;
    this.readOnly = new ReadOnly(READ_REQUESTS_MAX);
    this.pendingReads = [];
    this.uncommittedBytes = sumPayloadBytes(this.log.slice(this.log.committed + 1, this.log.lastIndex()));
    this.syncProgress();
    // An entry of the new term lets the leader commit everything before it (it never counts old terms).
    this.appendEntry({ type: EntryType.Normal, data: new Uint8Array(0), confChange: null, confState: null });
  }

  private resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
  }

  private resetRandomizedElectionTimeout(): void {
    const r = this.cfg.random.nextInt(this.cfg.electionTicks);
    assert(Number.isInteger(r) && r >= 0 && r < this.cfg.electionTicks, "Random.nextInt out of range");
    this.randomizedElectionTimeout = this.cfg.electionTicks + r;
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsed += 1;
    // Only a campaign restarts the timer (etcd tickElection). A learner's keeps running: restarting it
    // would keep the leader lease of a leader that is gone alive for ever, and the learner would ignore
    // every (pre-)vote request, though a promotion it has not heard of yet may need its vote.
    if (this.electionElapsed >= this.randomizedElectionTimeout && this.mayCampaign()) {
      this.campaign(this.cfg.preVote ? "preVote" : "vote");
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed += 1;
    this.electionElapsed += 1;
    for (const pr of this.progress.values()) {
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= this.snapshotTimeoutTicks) {
        pr.becomeProbe(); // the snapshot or its ack was lost: probe again
      }
    }
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, null);
        return;
      }
      for (const pr of this.progress.values()) pr.recentActive = false;
      this.leadTransferee = null; // a transfer that did not finish within an election timeout is abandoned
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastContext() ?? new Uint8Array(0));
    }
  }

  // ---------------------------------------------------------------- elections

  private campaign(kind: "preVote" | "vote" | "transfer"): void {
    let voteTerm: number;
    let type: MessageType;
    if (kind === "preVote") {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = MessageType.PreVote;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = MessageType.Vote;
    }
    if (this.recordVote(this.id, true) === "won") {
      if (kind === "preVote") this.campaign("vote");
      else this.becomeLeader();
      return;
    }
    for (const id of this.voters()) {
      if (id === this.id) continue;
      this.send({
        ...this.blank(type, id),
        term: voteTerm,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: kind === "transfer" ? TRANSFER_CONTEXT : new Uint8Array(0),
      });
    }
  }

  private recordVote(id: string, granted: boolean): "won" | "lost" | "pending" {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    const voters = this.voters();
    let yes = 0;
    let no = 0;
    for (const v of voters) {
      const g = this.votes.get(v);
      if (g === true) yes++;
      else if (g === false) no++;
    }
    const q = quorum(voters.length);
    if (yes >= q) return "won";
    if (no > voters.length - q) return "lost";
    return "pending";
  }

  private handleVoteRequest(m: Message): void {
    const isPre = m.type === MessageType.PreVote;
    const canVote =
      this.vote === m.from || (this.vote === null && this.lead === null) || (isPre && m.term > this.term);
    const respType = isPre ? MessageType.PreVoteResp : MessageType.VoteResp;
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted response carries the requested term so the candidate counts it (for pre-votes too).
      this.send({ ...this.blank(respType, m.from), term: m.term });
      if (!isPre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ ...this.blank(respType, m.from), reject: true });
    }
  }

  // ---------------------------------------------------------------- step

  /** The checks that need this node's state; a message that passes them is taken (null). */
  private stepChecked(m: Message): Refusal | null {
    if (m.to !== this.id)
      return { kind: "wrongRecipient", detail: `message for ${m.to} stepped into ${this.id}` };
    if (m.from === this.id) return { kind: "fromSelf", detail: `message from ${m.from} to itself` };
    if (MEMBERS_ONLY.has(m.type) && !this.isMember(m.from)) {
      return { kind: "unknownSender", detail: `message type ${m.type} from ${m.from}, not a member` };
    }
    if ((m.type === MessageType.TimeoutNow || m.type === MessageType.ReadIndexResp) && m.term >= this.term) {
      // Only the leader of this term sends these. With no leader known (a pre-candidate, a restart) one
      // may still be a late honest message: dropped uncounted.
      if (m.term > this.term || (this.lead !== null && m.from !== this.lead)) {
        return {
          kind: "notFromLeader",
          detail: `message type ${m.type} from ${m.from} in term ${m.term}; leader of term ${this.term}: ${this.lead ?? "none"}`,
        };
      }
      if (this.lead === null) return null;
    }
    if (
      m.term === this.term &&
      this.lead !== null &&
      m.from !== this.lead &&
      (m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.Snapshot)
    ) {
      // Election safety: one leader per term. A second one is forged (or a bug elsewhere).
      return {
        kind: "conflictingLeader",
        detail: `message type ${m.type} from ${m.from} in term ${m.term}, whose leader is ${this.lead}`,
      };
    }
    if (
      m.type === MessageType.AppendResp &&
      this.role === "leader" &&
      m.term === this.term &&
      m.index > this.log.lastIndex()
    ) {
      // A leader never shortens its log within its term, so no follower can answer about such an index.
      return {
        kind: "ackBeyondLog",
        detail: `append answer about ${m.index} from ${m.from}, beyond the last index ${this.log.lastIndex()}`,
      };
    }
    this.stepTaken(m);
    return null;
  }

  private stepTaken(m: Message): void {
    if (this.cfg.bugs?.leaderAdoptsResponseTerm && this.role === "leader" && RESPONSES.has(m.type)) {
      if (m.term > this.term) this.term = m.term; // and stays leader: its new entries carry a taken term
    }
    if (m.term > this.term) {
      if (m.type === MessageType.PreVote || m.type === MessageType.Vote) {
        const force = m.type === MessageType.Vote && equalBytes(m.context, TRANSFER_CONTEXT);
        const inLease =
          this.cfg.checkQuorum && this.lead !== null && this.electionElapsed < this.cfg.electionTicks;
        // Leader lease: while we hear from a leader, ignore vote requests (a removed or partitioned node
        // must not disrupt a working group).
        if (!force && inLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // never change term on a pre-vote request
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // the granted pre-vote carries the term we will campaign for
      } else if (
        m.type === MessageType.Append ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snapshot
      ) {
        this.becomeFollower(m.term, m.from);
      } else if (m.type === MessageType.Vote) {
        // Raft fig. 2: only a granted vote (or a leader's message) restarts the election timer. A vote
        // request that bumps our term but is then refused (its log is behind) must not: otherwise nodes
        // with stale logs, campaigning in turn, keep the one whose log could win from ever timing out.
        const elapsed = this.electionElapsed;
        const timeout = this.randomizedElectionTimeout;
        this.becomeFollower(m.term, null);
        this.electionElapsed = elapsed;
        this.randomizedElectionTimeout = timeout;
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (m.type === MessageType.Heartbeat || m.type === MessageType.Append) {
        // Tell a stale leader about the newer term so it steps down. Always (etcd does it only with
        // check-quorum or pre-vote): a node whose stale configuration names no live voter can otherwise
        // neither win an election nor ever hear of the group again.
        this.send(this.blank(MessageType.AppendResp, m.from));
      } else if (m.type === MessageType.PreVote) {
        this.send({ ...this.blank(MessageType.PreVoteResp, m.from), reject: true });
      } else if (m.type === MessageType.Vote) {
        // Reject with our term (raft paper §5.1; etcd stays silent): a candidate whose stale configuration
        // leaves this node out would otherwise never learn the newer term and could keep losing the race.
        this.send({ ...this.blank(MessageType.VoteResp, m.from), reject: true });
      }
      return;
    }

    switch (m.type) {
      case MessageType.PreVote:
      case MessageType.Vote:
        this.handleVoteRequest(m);
        return;
    }

    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        return;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        return;
      case "follower":
        this.stepFollower(m);
        return;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case MessageType.PreVoteResp:
      case MessageType.VoteResp: {
        const mine = this.role === "preCandidate" ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== mine) return;
        const result = this.recordVote(m.from, !m.reject);
        if (result === "won") {
          if (this.role === "preCandidate") this.campaign("vote");
          else this.becomeLeader();
        } else if (result === "lost") {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      default:
        return; // ReadIndex requests and others are dropped without a leader
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        this.send({ ...this.blank(MessageType.HeartbeatResp, m.from), context: m.context });
        return;
      case MessageType.Snapshot:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        if (this.isVoter(this.id)) this.campaign("transfer");
        return;
      case MessageType.ReadIndex:
        if (this.lead !== null)
          this.send({ ...this.blank(MessageType.ReadIndex, this.lead), context: m.context });
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ ...this.blank(MessageType.AppendResp, m.from), index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(m.index, m.logTerm)) {
      const lastNew = this.log.maybeAppend(m.index, m.entries);
      this.log.commitTo(Math.min(m.commit, lastNew));
      this.send({ ...this.blank(MessageType.AppendResp, m.from), index: lastNew });
      return;
    }
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({
      ...this.blank(MessageType.AppendResp, m.from),
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      rejectHintTerm: hint.term,
    });
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot!;
    const { index, term } = snap.metadata;
    if (index <= this.log.committed && !this.cfg.bugs?.installStaleSnapshot) {
      this.send({ ...this.blank(MessageType.AppendResp, m.from), index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(index, term) && !this.cfg.bugs?.installStaleSnapshot) {
      // We already hold the snapshot's last entry: just fast-forward the commit.
      this.log.commitTo(index);
      this.send({ ...this.blank(MessageType.AppendResp, m.from), index: this.log.committed });
      return;
    }
    this.log.restore(snap);
    this.send({ ...this.blank(MessageType.AppendResp, m.from), index: this.log.lastIndex() });
  }

  private stepLeader(m: Message): void {
    if (m.type === MessageType.ReadIndex) {
      this.leaderReadIndex(m.from, m.context);
      return;
    }
    const pr = this.progress.get(m.from);
    if (pr === undefined) return; // not a member (any more)
    switch (m.type) {
      case MessageType.AppendResp:
        pr.recentActive = true;
        this.handleAppendResp(m, pr);
        return;
      case MessageType.HeartbeatResp:
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === "replicate" && pr.inflightFull()) pr.freeFirstOne();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        if (m.context.length > 0) this.handleReadAck(m.from, m.context);
        return;
      default:
        return;
    }
  }

  private handleAppendResp(m: Message, pr: Progress): void {
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.rejectHintTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    assert(
      m.index <= this.log.lastIndex(),
      () => `ack ${m.index} beyond leader's last index ${this.log.lastIndex()}`,
    );
    const oldPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      if (oldPaused && !pr.isPaused()) this.sendAppend(m.from);
      return;
    }
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.freeInflightsTo(m.index);

    if (this.maybeCommit()) this.bcastAppend();
    else if (oldPaused) this.sendAppend(m.from);
    if (this.role !== "leader") return; // stepped down after committing its own removal
    // Pipelining: keep the window full.
    let rounds = 0;
    while (rounds++ < this.cfg.inflightMax && this.maybeSendAppend(m.from, false));
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send(this.blank(MessageType.TimeoutNow, m.from));
    }
  }

  // ---------------------------------------------------------------- replication

  /** Throws unless this node may append a proposal of `bytes` payload bytes now. */
  private mustAcceptProposal(bytes: number): void {
    if (this.role !== "leader") {
      throw new RaftError("NOT_LEADER", `not the leader (leader: ${this.lead ?? "unknown"})`, "NOT_LEADER");
    }
    if (this.leadTransferee !== null) {
      throw new RaftError(
        "PROPOSAL_DROPPED",
        `leadership transfer to ${this.leadTransferee} in progress`,
        "TRANSFER_IN_PROGRESS",
      );
    }
    if (!this.isVoter(this.id)) {
      throw new RaftError("PROPOSAL_DROPPED", "leader is removing itself", "LEADER_REMOVING_ITSELF");
    }
    this.mustFitUncommitted(bytes);
  }

  /** etcd increaseUncommittedSize: one entry may always wait when nothing else does, whatever its size. */
  private mustFitUncommitted(bytes: number): void {
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.uncommittedBytesMax) {
      throw new RaftError(
        "PROPOSAL_DROPPED",
        `${this.uncommittedBytes} uncommitted bytes; ${bytes} more would exceed ${this.uncommittedBytesMax}`,
        "UNCOMMITTED_BYTES_FULL",
      );
    }
  }

  /** A learner becomes a voter only once it holds (nearly) the leader's log. */
  private mustBeCaughtUp(id: string): void {
    const match = this.progress.get(id)?.match ?? 0;
    const lag = this.log.lastIndex() - match;
    if (match === 0 || lag > this.promoteLagMax) {
      throw new RaftError(
        "BAD_CONF_CHANGE",
        `learner ${id} is at ${match}, ${lag} entries behind the leader's ${this.log.lastIndex()} (promoteLagMax ${this.promoteLagMax})`,
        "LEARNER_BEHIND",
      );
    }
  }

  private appendEntry(e: Omit<Entry, "index" | "term">): ProposalPosition {
    assert(this.role === "leader", "only the leader appends");
    const entry: Entry = { ...e, index: this.log.lastIndex() + 1, term: this.term };
    this.log.append([entry]);
    this.uncommittedBytes += payloadBytes(entry);
    if (entry.confState !== null) this.syncProgress();
    // The leader's own ack comes when the entry is persisted (advance); with one voter that commits it.
    this.bcastAppend();
    return { index: entry.index, term: entry.term };
  }

  /** Make the progress map match the current configuration (leader only). */
  private syncProgress(): void {
    const cs = this.log.confState();
    const members = new Set([...cs.voters, ...cs.learners]);
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      if (id === this.id || this.progress.has(id)) continue;
      const pr = new Progress(this.log.lastIndex() + 1, this.cfg.inflightMax, this.inflightBytesMax);
      pr.recentActive = true; // give a new member one election timeout before check-quorum counts it
      this.progress.set(id, pr);
    }
    if (this.leadTransferee !== null && !cs.voters.includes(this.leadTransferee)) this.leadTransferee = null;
  }

  private bcastAppend(): void {
    for (const id of this.progress.keys()) this.sendAppend(id);
  }

  private sendAppend(to: string): void {
    this.maybeSendAppend(to, true);
  }

  /** Send entries (or a snapshot) to `to`; returns whether something was sent. */
  private maybeSendAppend(to: string, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      // The follower needs entries we compacted away: InstallSnapshot.
      const snap = this.log.snapshot;
      this.send({ ...this.blank(MessageType.Snapshot, to), snapshot: snap });
      pr.becomeSnapshot(snap.metadata.index);
      return true;
    }
    const entries =
      pr.next <= this.log.lastIndex()
        ? this.log.slice(pr.next, this.log.lastIndex(), this.cfg.batchEntriesMax, this.cfg.batchBytesMax)
        : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      ...this.blank(MessageType.Append, to),
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    });
    pr.sentEntries(prevIndex + entries.length, entries.length, sumPayloadBytes(entries));
    return true;
  }

  private bcastHeartbeat(context: Uint8Array): void {
    for (const [id, pr] of this.progress) {
      // Never tell a follower to commit beyond what it is known to hold.
      this.send({
        ...this.blank(MessageType.Heartbeat, id),
        commit: this.cfg.bugs?.heartbeatCommitBeyondMatch
          ? this.log.committed
          : Math.min(pr.match, this.log.committed),
        context,
      });
    }
  }

  /** Advance commit to the highest index stored by a quorum of voters, if of the current term. */
  private maybeCommit(): boolean {
    const voters = this.voters();
    if (voters.length === 0) return false;
    const counted = this.cfg.bugs?.learnersCountInQuorum
      ? [...voters, ...this.log.confState().learners]
      : voters;
    const matches = counted.map((id) =>
      id === this.id ? this.log.stableIndex : (this.progress.get(id)?.match ?? 0),
    );
    matches.sort((a, b) => b - a);
    const mci = matches[quorum(voters.length) - 1]!;
    if (mci <= this.log.committed) return false;
    // Raft §5.4.2: only entries of the leader's own term are committed by counting replicas.
    if (this.log.term(mci) !== this.term && !this.cfg.bugs?.commitOldTermEntries) return false;
    this.uncommittedBytes -= sumPayloadBytes(this.log.slice(this.log.committed + 1, mci));
    assert(this.uncommittedBytes >= 0, "uncommitted bytes below zero");
    this.log.commitTo(mci);
    this.onCommitAdvanced();
    return true;
  }

  private onCommitAdvanced(): void {
    if (this.log.term(this.log.committed) === this.term && this.pendingReads.length > 0) {
      const reads = this.pendingReads;
      this.pendingReads = [];
      for (const r of reads) this.leaderReadIndex(r.from, r.context);
    }
    if (!this.isVoter(this.id) && this.log.committed >= this.log.lastConfIndex()) {
      // Our own removal is committed: hand over by stepping down (the remaining voters elect a leader).
      this.becomeFollower(this.term, null);
    }
  }

  // ---------------------------------------------------------------- ReadIndex

  private leaderReadIndex(from: string, context: Uint8Array): void {
    if (this.log.term(this.log.committed) !== this.term && !this.cfg.bugs?.readIndexBeforeOwnTermCommit) {
      // The commit index of a fresh leader may lag: wait until an entry of our term commits.
      if (this.pendingReads.length < PENDING_READS_MAX) this.pendingReads.push({ from, context });
      return;
    }
    const voters = this.voters();
    if ((voters.length === 1 && voters[0] === this.id) || this.cfg.bugs?.readWithoutQuorum) {
      this.respondRead(from, this.log.committed, context);
      return;
    }
    if (this.readOnly.add(this.log.committed, from, context, this.id)) this.bcastHeartbeat(context);
  }

  private handleReadAck(from: string, context: Uint8Array): void {
    const acks = this.readOnly.recvAck(from, context);
    if (acks === undefined) return;
    const voters = this.voters();
    const yes = voters.filter((v) => acks.has(v)).length;
    if (yes < quorum(voters.length)) return;
    for (const r of this.readOnly.advance(context)) this.respondRead(r.from, r.index, r.context);
  }

  private respondRead(from: string, index: number, context: Uint8Array): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ ...this.blank(MessageType.ReadIndexResp, from), index, context });
  }

  // ---------------------------------------------------------------- helpers

  private quorumActive(): boolean {
    const voters = this.voters();
    const active = voters.filter(
      (id) => id === this.id || this.progress.get(id)?.recentActive === true,
    ).length;
    return active >= quorum(voters.length);
  }

  private voters(): string[] {
    return this.log.confState().voters;
  }

  private isVoter(id: string): boolean {
    return this.log.confState().voters.includes(id);
  }

  /**
   * A voter of the latest configuration campaigns; so does a voter whose removal is not committed yet
   * (Raft dissertation §4.2.2): it may be the only node holding that entry up to date, and without it the
   * remaining voters may not be able to elect anyone. Its own vote is not counted (recordVote counts the
   * latest configuration's voters only), and once it leads, committing the removal makes it step down.
   */
  private mayCampaign(): boolean {
    if (this.isVoter(this.id)) return true;
    const at = this.log.lastConfIndex();
    return this.log.committed < at && this.log.confStateAt(at - 1).voters.includes(this.id);
  }

  private isMember(id: string): boolean {
    const cs = this.log.confState();
    return cs.voters.includes(id) || cs.learners.includes(id);
  }

  private blank(type: MessageType, to: string): Message {
    return {
      type,
      from: this.id,
      to,
      term: this.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      rejectHintTerm: 0,
      snapshot: null,
      context: new Uint8Array(0),
    };
  }

  private send(m: Message): void {
    assert(m.to !== this.id, "sending a message to self");
    this.msgs.push(m);
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  private checkInvariants(): void {
    const log = this.log;
    assert(log.applied <= log.committed, "applied > committed");
    assert(log.committed <= log.lastIndex(), "committed > last index");
    assert(log.stableIndex <= log.lastIndex(), "stable > last index");
    assert(this.term >= log.lastTerm(), "term below the last log term");
    assert(this.role !== "leader" || this.lead === this.id, "leader does not know itself as leader");
    assert(this.role !== "candidate" || this.vote === this.id, "candidate did not vote for itself");
    if (this.role === "leader") {
      for (const [id, pr] of this.progress) {
        assert(pr.match < pr.next, () => `progress of ${id}: match ${pr.match} >= next ${pr.next}`);
        assert(pr.match <= log.lastIndex(), () => `progress of ${id}: match beyond last index`);
      }
    }
  }
}

/** Votes needed among `n` voters. */
export function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** The configuration after a single-server change, or RaftError("BAD_CONF_CHANGE"). */
export function applyConfChange(cs: ConfState, change: ConfChange): ConfState {
  const refuse = (reason: RaftRefusalReason, why: string): never => {
    throw new RaftError("BAD_CONF_CHANGE", why, reason);
  };
  if (typeof change !== "object" || change === null) refuse("MALFORMED_CHANGE", "not an object");
  const { nodeId } = change;
  if (!isNodeId(nodeId)) refuse("MALFORMED_CHANGE", `nodeId must be ${NODE_ID_RULE}`);
  if (!(change.context instanceof Uint8Array)) refuse("MALFORMED_CHANGE", "context must be a Uint8Array");
  const voters = [...cs.voters];
  const learners = [...cs.learners];
  switch (change.type) {
    case ConfChangeType.AddLearner:
      if (voters.includes(nodeId) || learners.includes(nodeId))
        refuse("ALREADY_MEMBER", `${nodeId} is already a member`);
      learners.push(nodeId);
      break;
    case ConfChangeType.PromoteLearner:
      if (!learners.includes(nodeId)) refuse("NOT_LEARNER", `${nodeId} is not a learner`);
      learners.splice(learners.indexOf(nodeId), 1);
      voters.push(nodeId);
      break;
    case ConfChangeType.RemoveNode:
      if (voters.includes(nodeId)) {
        if (voters.length === 1) refuse("LAST_VOTER", "cannot remove the last voter");
        voters.splice(voters.indexOf(nodeId), 1);
      } else if (learners.includes(nodeId)) {
        learners.splice(learners.indexOf(nodeId), 1);
      } else refuse("NOT_MEMBER", `${nodeId} is not a member`);
      break;
    default:
      refuse("UNKNOWN_CHANGE_TYPE", `unknown conf change type ${String(change.type)}`);
  }
  return { voters, learners };
}

function checkConfig(c: RaftConfig): void {
  const bad = (what: string): never => {
    throw new RaftError("BAD_ARGUMENT", `raft config: ${what}`);
  };
  if (typeof c.id !== "string" || c.id.length === 0) bad("id must be a non-empty string");
  const posInt = (v: number, name: string): void => {
    if (!Number.isSafeInteger(v) || v < 1) bad(`${name} must be an integer >= 1`);
  };
  posInt(c.electionTicks, "electionTicks");
  posInt(c.heartbeatTicks, "heartbeatTicks");
  posInt(c.inflightMax, "inflightMax");
  posInt(c.batchEntriesMax, "batchEntriesMax");
  posInt(c.batchBytesMax, "batchBytesMax");
  if (c.inflightBytesMax !== undefined) posInt(c.inflightBytesMax, "inflightBytesMax");
  if (c.uncommittedBytesMax !== undefined) posInt(c.uncommittedBytesMax, "uncommittedBytesMax");
  if (c.snapshotTimeoutTicks !== undefined) posInt(c.snapshotTimeoutTicks, "snapshotTimeoutTicks");
  if (c.promoteLagMax !== undefined && !(Number.isSafeInteger(c.promoteLagMax) && c.promoteLagMax >= 0))
    bad("promoteLagMax must be an integer >= 0");
  if (c.electionTicks < 2 * c.heartbeatTicks) bad("electionTicks must be >= 2 * heartbeatTicks");
  if (typeof c.random?.nextInt !== "function") bad("random must implement nextInt");
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
