/**
 * Public types of the pure raft core (etcd-io/raft style). Everything here is a plain
 * serialisable value (numbers, strings, booleans, null, Uint8Array, arrays, plain objects)
 * so a driver can put it on the wire or on disk without knowing the core's internals.
 *
 * The core does no IO. A driver loops:
 *   tick() on a timer, step(message) for every message received, propose()/readIndex()/... for clients;
 *   while (node.hasReady()) { const rd = node.ready(); <do IO in the order on `Ready`>; node.advance(rd); }
 */

/** Identifies a raft member. Never the empty string. */
export type NodeId = string;

/** Seeded random source injected into the core (no Math.random inside). */
export interface Random {
  /** A uniformly distributed integer in [0, maxExclusive). maxExclusive >= 1. */
  nextInt(maxExclusive: number): number;
}

/**
 * TEST-ONLY fault injection: each flag turns the core into a deliberately broken variant so the
 * simulator can prove it finds such bugs. Never set in production; all default to false.
 */
export interface RaftBugs {
  /** The leader advances commit by counting replicas of entries of older terms (raft paper §5.4.2, fig. 8). */
  commitOldTermEntries?: boolean;
  /** Votes leave before they are persisted: `Ready.hardState.vote` is always null, so a crash forgets the vote. */
  voteBeforePersist?: boolean;
  /** The leader answers ReadIndex at once, without a heartbeat round proving it is still leader (stale reads). */
  readWithoutQuorum?: boolean;
  /** The leader counts learners' replicas toward the commit quorum (quorum counting with learners). */
  learnersCountInQuorum?: boolean;
  /** The leader accepts a membership change while the previous one is uncommitted. */
  concurrentConfChanges?: boolean;
  /** A leader that sees a newer term in a response takes that term and stays leader (no step-down). */
  leaderAdoptsResponseTerm?: boolean;
  /** A fresh leader answers ReadIndex before an entry of its own term is committed (raft thesis §6.4). */
  readIndexBeforeOwnTermCommit?: boolean;
  /** A follower installs a snapshot at or below its commit index (rolls back committed state). */
  installStaleSnapshot?: boolean;
  /** Heartbeats tell a follower to commit up to the leader's commit, beyond the match the leader knows of. */
  heartbeatCommitBeyondMatch?: boolean;
  /** `Ready.mustSync` is false for new entries (an append ack leaves before the entries are durable). */
  entriesWithoutSync?: boolean;
}

export interface RaftConfig {
  id: NodeId;
  /** A follower campaigns after a randomised timeout in [electionTicks, 2*electionTicks). >= 2*heartbeatTicks. */
  electionTicks: number;
  /** The leader sends heartbeats every heartbeatTicks ticks. >= 1. */
  heartbeatTicks: number;
  /** Bound on in-flight append messages to one follower in replicate state (pipelining window). >= 1. */
  inflightMax: number;
  /** Bound on entries in one append message. >= 1. */
  batchEntriesMax: number;
  /** Bound on payload bytes in one append message (at least one entry is always sent). >= 1. */
  batchBytesMax: number;
  /**
   * Bound on payload bytes in flight to one follower in replicate state, besides the `inflightMax` count
   * (etcd MaxInflightBytes): the leader pauses once this many bytes are unacknowledged. One append is
   * always allowed when nothing is in flight, so a single entry larger than this still goes out. >= 1.
   * Default DEFAULT_INFLIGHT_BYTES_MAX.
   */
  inflightBytesMax?: number;
  /**
   * Bound on payload bytes of the leader's uncommitted entries (etcd MaxUncommittedEntriesSize): a
   * proposal that would exceed it is refused with RaftError("PROPOSAL_DROPPED", reason
   * "UNCOMMITTED_BYTES_FULL"), except when nothing is uncommitted (one entry of any size may always
   * wait). >= 1. Default DEFAULT_UNCOMMITTED_BYTES_MAX.
   */
  uncommittedBytesMax?: number;
  /**
   * A learner is promoted only once its match is within this many entries of the leader's last index
   * (and it has acknowledged something): a voter that cannot vote for an up-to-date log or help commit
   * for a long time would weaken the group. >= 0. Default DEFAULT_PROMOTE_LAG_MAX.
   */
  promoteLagMax?: number;
  /**
   * Ticks a leader waits for a follower to acknowledge an InstallSnapshot before sending it again (the
   * snapshot or its ack may be lost). A transport that sends a large snapshot in flow-controlled chunks
   * sets this to cover a whole transfer, or tells the outcome with reportSnapshot(). >= 1.
   * Default electionTicks.
   */
  snapshotTimeoutTicks?: number;
  /** Leader steps down when it has not heard from a quorum within an election timeout. */
  checkQuorum: boolean;
  /** Candidates run a pre-vote round (no term bump) before a real election. */
  preVote: boolean;
  random: Random;
  /**
   * Index the application's state machine already reflects at start (if it persists its own state);
   * committed entries after it are handed out again. Default: the persisted snapshot's index.
   */
  applied?: number;
  bugs?: RaftBugs;
}

export const DEFAULT_INFLIGHT_BYTES_MAX = 16 * 1024 * 1024;
export const DEFAULT_UNCOMMITTED_BYTES_MAX = 64 * 1024 * 1024;
export const DEFAULT_PROMOTE_LAG_MAX = 1024;

/** What must be durable before any message produced alongside it leaves. */
export interface HardState {
  term: number;
  /** Who this node voted for in `term`, or null. */
  vote: NodeId | null;
  commit: number;
}

/** The membership configuration. A node is in at most one of the two lists. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export const ConfChangeType = {
  /** Add a non-voting member that receives the log (how a new peer catches up). */
  AddLearner: 1,
  /** Turn an existing learner into a voter. */
  PromoteLearner: 2,
  /** Remove a voter (possibly the leader itself) or a learner. */
  RemoveNode: 3,
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

/** A single-server membership change as proposed by the application. */
export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to the core (e.g. the new member's address), carried in the log entry. */
  context: Uint8Array;
}

export const EntryType = {
  /** Application data (may be empty: a new leader appends an empty normal entry). */
  Normal: 1,
  /** A membership change; `confChange` and `confState` are set. */
  ConfChange: 2,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  data: Uint8Array;
  /** For EntryType.ConfChange: the change; null otherwise. */
  confChange: ConfChange | null;
  /**
   * For EntryType.ConfChange: the full configuration that results from the change; null otherwise.
   * MEMBERSHIP RULE: a node uses the latest configuration in its log as soon as the entry is appended
   * (committed or not; raft thesis §4.1, single-server changes), and reverts if the entry is truncated.
   */
  confState: ConfState | null;
}

export interface SnapshotMetadata {
  /** Last log index the snapshot covers (0 for a bootstrap snapshot). */
  index: number;
  /** Term of the entry at `index`. */
  term: number;
  /** Configuration as of `index`. */
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The application's state machine image at `metadata.index`; opaque to the core. */
  data: Uint8Array;
}

export const MessageType = {
  PreVote: 1,
  PreVoteResp: 2,
  Vote: 3,
  VoteResp: 4,
  /** Log entries (possibly none) after (index, logTerm); carries the leader's commit. */
  Append: 5,
  /** reject=false: follower's log matches up to `index`. reject=true: `rejectHint` is a guess for next. */
  AppendResp: 6,
  Heartbeat: 7,
  HeartbeatResp: 8,
  /**
   * InstallSnapshot: `snapshot` is set. Answered with AppendResp. The core sends and takes the whole
   * snapshot as one message; a transport may carry `snapshot.data` in chunks and step the message once
   * it is whole (the core holds nothing between chunks, and waits snapshotTimeoutTicks for the ack).
   */
  Snapshot: 9,
  /** Leadership transfer: the receiver campaigns at once, skipping pre-vote. */
  TimeoutNow: 10,
  /** A follower forwards a ReadIndex request (`context`) to the leader. */
  ReadIndex: 11,
  /** Leader's answer: `index` is the read index for `context`. */
  ReadIndexResp: 12,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/**
 * One flat message shape for every type (unused fields are 0 / false / [] / null / empty),
 * so encoders need no per-type schema.
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** Append: term of the entry at `index`. Vote/PreVote: candidate's last log term. */
  logTerm: number;
  /** Append: index preceding `entries`. Vote: candidate's last index. AppendResp: see type. ReadIndexResp: read index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** AppendResp reject: follower's suggested index to retry from (fast backtracking). */
  rejectHint: number;
  /** AppendResp reject: the follower's term at rejectHint (0 if unknown), used to skip a whole term. */
  rejectHintTerm: number;
  snapshot: Snapshot | null;
  /**
   * Heartbeat/HeartbeatResp/ReadIndex/ReadIndexResp: the ReadIndex request context (must be unique across
   * the cluster, e.g. node id + counter). Vote: non-empty marks a leadership transfer. Empty otherwise.
   */
  context: Uint8Array;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  leader: NodeId | null;
  role: Role;
}

/** A completed ReadIndex request: the read is linearizable once the state machine has applied `index`. */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

/**
 * The output of the core, to be handled IN THIS ORDER, then acknowledged with advance(ready):
 *  1. Persist, as ONE write that a crash leaves either whole or absent, and that lands on disk after every
 *     earlier write (a crash keeps a prefix of the sequence of writes, never a later write without an
 *     earlier one):
 *     a. `snapshot` (if non-null): store it and DELETE ALL stored log entries (the core has discarded its log),
 *        then (after the write) restore the state machine from `snapshot.data`;
 *     b. `entries` (if any): delete every stored entry with index >= entries[0].index, then append them;
 *     c. `hardState` (if non-null): overwrite the stored hard state.
 *     THE DURABILITY RULE (the only one; etcd's MustSync): when `mustSync` is true, that write must be
 *     durable (fsync'd) before ANY of `messages` leaves, because a vote, an append ack or a leader's own
 *     count toward commit promises exactly what it holds. `mustSync` is true iff the Ready carries a
 *     snapshot, entries, or a new term or vote. When it is false the write only moves `commit`: it may go
 *     unsynced and the messages need not wait for a sync, because a lost commit index is learned again
 *     from the leader (raft paper fig. 2 keeps it volatile), and the prefix rule above means a later
 *     synced write makes it durable anyway.
 *  2. Then send `messages`: once step 1 is durable when `mustSync`, once it is written otherwise. Messages
 *     to self never appear here. Messages may be lost, reordered or duplicated.
 *  3. Apply `committedEntries` in order (all of them are already durable). Serve `readStates` once the
 *     applied index >= readState.index.
 *  4. Call advance(ready).
 * A crash at any point is safe: the node restarts from what step 1 made durable.
 */
export interface Ready {
  /** Non-null when leader or role changed since the last Ready. Informational; never persisted. */
  softState: SoftState | null;
  hardState: HardState | null;
  snapshot: Snapshot | null;
  entries: Entry[];
  messages: Message[];
  committedEntries: Entry[];
  readStates: ReadState[];
  /** Step 1's write must be durable before any message leaves (see THE DURABILITY RULE above). */
  mustSync: boolean;
}

/** What a driver read back from disk; passed to the RaftNode constructor on every (re)start. */
export interface PersistedState {
  hardState: HardState;
  /**
   * Latest stored snapshot. Founding members of a new cluster store bootstrapSnapshot(voters) before their
   * first start. A node that joins later starts with null (empty config) and learns everything from the leader.
   */
  snapshot: Snapshot | null;
  /** Stored entries after the snapshot, contiguous and in order. */
  entries: Entry[];
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  inflight: number;
  /** Payload bytes of the appends in flight (replicate state). */
  inflightBytes: number;
  recentActive: boolean;
}

export interface RaftStatus {
  id: NodeId;
  role: Role;
  leader: NodeId | null;
  term: number;
  vote: NodeId | null;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  confState: ConfState;
  /** Leader only: one entry per other member. */
  progress: Record<NodeId, ProgressStatus>;
  leadTransferee: NodeId | null;
  /** Leader only (0 otherwise): payload bytes of the entries after commit, bounded by uncommittedBytesMax. */
  uncommittedBytes: number;
  /** Messages step() refused since start, per kind (every kind present, zero included). */
  refused: Record<RefusalKind, number>;
}

/**
 * Why step() refused a message from the network. Such a message is dropped and counted and changes
 * nothing else; no honest peer sends one, except `unknownSender` from a member just removed.
 */
export const RefusalKinds = [
  /** Not the shape of a Message (types, ranges, missing fields). */
  "malformed",
  /** `to` is not this node. */
  "wrongRecipient",
  /** `from` is this node. */
  "fromSelf",
  /** A term so large that counting on from it could leave the safe-integer range (TERM_MAX). */
  "termTooLarge",
  /** An append ack, heartbeat ack, vote answer or forwarded read from a node not in this node's configuration. */
  "unknownSender",
  /** A TimeoutNow or ReadIndexResp not from the leader this node follows in this term. */
  "notFromLeader",
  /** An append, heartbeat or snapshot in this node's term from another node than that term's leader. */
  "conflictingLeader",
  /** Append entries that do not follow `index` one by one. */
  "entryGap",
  /** An append entry whose term is above the message's term. */
  "entryTermAboveMessage",
  /** Append entry terms that decrease (from `logTerm` on). */
  "entryTermDecreasing",
  /** An append's `logTerm` (or a vote request's last log term) above the message's term. */
  "logTermAboveMessage",
  /** An append answer (ack or rejection) in the leader's term about an index beyond the leader's log. */
  "ackBeyondLog",
  /** A snapshot whose term is above the message's term. */
  "snapshotTermAboveMessage",
] as const;
export type RefusalKind = (typeof RefusalKinds)[number];

/** The value step() returns for a message it refused; null means the message was taken. */
export interface Refusal {
  kind: RefusalKind;
  /** Names what is wrong (fields and numbers, never entry or snapshot data). */
  detail: string;
}

/** Terms above this are refused (`termTooLarge`), so a forged term cannot push counting past 2^53. */
export const TERM_MAX = 2 ** 52;

export type RaftErrorCode =
  | "NOT_LEADER"
  | "PROPOSAL_DROPPED"
  | "CONF_CHANGE_PENDING"
  | "BAD_CONF_CHANGE"
  | "BAD_ARGUMENT"
  | "BAD_STATE"
  | "INVARIANT";

/**
 * Why a client call (a proposal, a membership change) was refused: finer than RaftErrorCode, one code per
 * cause, so a caller (an autopilot) can act on it without reading the message.
 */
export type RaftRefusalReason =
  /** This node is not the leader. */
  | "NOT_LEADER"
  /** A leadership transfer is in progress. */
  | "TRANSFER_IN_PROGRESS"
  /** The leader is removing itself from the group. */
  | "LEADER_REMOVING_ITSELF"
  /** The leader's uncommitted entries already hold uncommittedBytesMax bytes. */
  | "UNCOMMITTED_BYTES_FULL"
  /** The previous membership change is not committed yet. */
  | "CHANGE_UNCOMMITTED"
  /** The leader has not committed an entry of its own term yet. */
  | "TERM_UNCOMMITTED"
  /** The change is not an object, or its node id or context is not valid. */
  | "MALFORMED_CHANGE"
  /** The change type is unknown. */
  | "UNKNOWN_CHANGE_TYPE"
  /** AddLearner of a node that is already a voter or learner. */
  | "ALREADY_MEMBER"
  /** PromoteLearner of a node that is not a learner. */
  | "NOT_LEARNER"
  /** RemoveNode of a node that is not a member. */
  | "NOT_MEMBER"
  /** RemoveNode of the only voter. */
  | "LAST_VOTER"
  /** PromoteLearner of a learner whose match is more than promoteLagMax entries behind (or nothing yet). */
  | "LEARNER_BEHIND";

/** Every error the core throws. `code` (and `reason`) are the things to match on, never the message. */
export class RaftError extends Error {
  constructor(
    readonly code: RaftErrorCode,
    message: string,
    /** Set on every refused proposal and membership change; null for other errors. */
    readonly reason: RaftRefusalReason | null = null,
  ) {
    super(message);
    this.name = "RaftError";
  }
}

/** A violated internal invariant: a bug in the core (or corrupted persisted state), never bad input. */
export class RaftInvariantError extends RaftError {
  constructor(message: string) {
    super("INVARIANT", message);
    this.name = "RaftInvariantError";
  }
}

/** The snapshot every founding member stores before its first start: index 0, the initial voters. */
export function bootstrapSnapshot(voters: NodeId[]): Snapshot {
  return {
    metadata: { index: 0, term: 0, confState: { voters: [...voters], learners: [] } },
    data: new Uint8Array(0),
  };
}

/** Hard state of a node that never ran. */
export function emptyHardState(): HardState {
  return { term: 0, vote: null, commit: 0 };
}

/** Where a proposal landed; it took effect iff the entry applied at `index` has this `term`. */
export interface ProposalPosition {
  index: number;
  term: number;
}

/**
 * The methods of `RaftNode` (cluster/raft/core/raft-node.ts), constructed as
 * `new RaftNode(config: RaftConfig, persisted: PersistedState)`.
 */
export interface RaftNodeApi {
  /** Advance logical time by one tick (election and heartbeat timeouts count ticks). */
  tick(): void;
  /**
   * Feed one received message. Never throws for anything the network can send: a message no honest peer
   * sends is refused as a value (a Refusal naming its kind, counted in status().refused) and changes
   * nothing else; stale messages are ignored (null). Only a broken core throws (RaftInvariantError).
   */
  step(message: Message): Refusal | null;
  /**
   * Leader only; else throws RaftError("NOT_LEADER"). Refused with "PROPOSAL_DROPPED" during a transfer,
   * while the leader removes itself, or beyond uncommittedBytesMax; `reason` says which.
   */
  propose(data: Uint8Array): ProposalPosition;
  /**
   * Leader only; one change at a time, else RaftError("CONF_CHANGE_PENDING"); invalid ones "BAD_CONF_CHANGE";
   * every refusal carries a RaftRefusalReason.
   */
  proposeConfChange(change: ConfChange): ProposalPosition;
  /** Request a linearizable read; a ReadState with the same context appears in a later Ready (or never: retry). */
  readIndex(context: Uint8Array): void;
  /** Leader only: hand leadership to `to` (a voter) once it is caught up. */
  transferLeadership(to: NodeId): void;
  hasReady(): boolean;
  /** The pending output, or null when there is none. Call advance(ready) after handling it. */
  ready(): Ready | null;
  advance(ready: Ready): void;
  /**
   * The transport tells the leader how sending the snapshot to `to` ended (etcd ReportSnapshot), so it
   * need not wait snapshotTimeoutTicks: the follower is probed again, from just after the snapshot when
   * it was delivered, from its last known match when the send failed, once the next heartbeat is
   * answered. Ignored unless this node leads and `to` is waiting for a snapshot.
   */
  reportSnapshot(to: NodeId, outcome: "delivered" | "failed"): void;
  /**
   * The application hands its state at `index` (<= applied); the core discards log entries up to `index`
   * and returns the snapshot (with term and config at `index`) that the driver must persist; the driver may
   * then delete stored entries <= index.
   */
  compact(index: number, data: Uint8Array): Snapshot;
  status(): RaftStatus;
}
