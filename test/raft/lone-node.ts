import {
  EntryType,
  MessageType,
  RaftError,
  RaftNode,
  type Entry,
  type Message,
  type RaftConfig,
  type Random,
  type Ready,
  type Snapshot,
} from "../../cluster/raft/core/index.js";

/**
 * One real RaftNode driven by hand (etcd raft_test.go style): the test builds its persisted state, steps
 * the messages it wants, and reads what the node sends and hands to its driver. No network, no harness
 * in between, so a test can pin one rule of the protocol exactly.
 */
export interface LoneOptions {
  id?: string;
  voters?: string[];
  learners?: string[];
  /** The persisted snapshot's index and term (default 0, 0). */
  snapIndex?: number;
  snapTerm?: number;
  entries?: Entry[];
  term?: number;
  vote?: string | null;
  commit?: number;
  config?: Partial<RaftConfig>;
}

/** A Random that always answers `value` (clamped into range), for exact election timeouts. */
export function fixedRandom(value: number): Random {
  return { nextInt: (max) => Math.min(value, max - 1) };
}

export function entry(index: number, term: number, data = `e${index}t${term}`): Entry {
  return {
    index,
    term,
    type: EntryType.Normal,
    data: new TextEncoder().encode(data),
    confChange: null,
    confState: null,
  };
}

/** Entries 1..n, each of the given terms (terms[i] for index i + 1). */
export function entries(...terms: number[]): Entry[] {
  return terms.map((t, i) => entry(i + 1, t));
}

export function snapshotAt(index: number, term: number, voters: string[], learners: string[] = []): Snapshot {
  return {
    metadata: { index, term, confState: { voters, learners } },
    data: new TextEncoder().encode(`s${index}`),
  };
}

export function loneConfig(id: string, over: Partial<RaftConfig> = {}): RaftConfig {
  return {
    id,
    electionTicks: 10,
    heartbeatTicks: 1,
    inflightMax: 256,
    batchEntriesMax: 64,
    batchBytesMax: 1 << 20,
    checkQuorum: false,
    preVote: false,
    random: fixedRandom(0),
    ...over,
  };
}

export function lone(o: LoneOptions = {}): RaftNode {
  const id = o.id ?? "a";
  const voters = o.voters ?? ["a", "b", "c"];
  return new RaftNode(loneConfig(id, o.config), {
    hardState: { term: o.term ?? 0, vote: o.vote ?? null, commit: o.commit ?? 0 },
    snapshot: snapshotAt(o.snapIndex ?? 0, o.snapTerm ?? 0, voters, o.learners ?? []),
    entries: o.entries ?? [],
  });
}

/** A message with every field blank except those given. */
export function msg(over: Partial<Message> & Pick<Message, "type" | "from" | "to">): Message {
  return {
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshot: null,
    context: new Uint8Array(0),
    ...over,
  };
}

/** Handles every pending Ready (as a driver that persists at once) and returns them. */
export function drain(core: RaftNode): Ready[] {
  const out: Ready[] = [];
  for (let i = 0; i < 100 && core.hasReady(); i++) {
    const rd = core.ready()!;
    out.push(rd);
    core.advance(rd);
  }
  return out;
}

/** The messages of every pending Ready. */
export function sent(core: RaftNode): Message[] {
  return drain(core).flatMap((rd) => rd.messages);
}

/**
 * Steps `m` and says how the node took it: null when taken, otherwise the refusal's kind. A refusal is a
 * thrown RaftError("BAD_ARGUMENT") in the core of before issue 7 and a returned Refusal after it; both
 * read as "malformed" here except a returned refusal's own kind.
 */
export function stepOutcome(core: RaftNode, m: unknown): string | null {
  try {
    const r = core.step(m as Message) as unknown;
    if (r === undefined || r === null) return null;
    return (r as { kind: string }).kind;
  } catch (e) {
    if (e instanceof RaftError && e.code === "BAD_ARGUMENT") return "malformed";
    throw e;
  }
}

/** Makes lone node `id` (a voter among `voters`) leader of term 1 by hand, returning it with nothing pending. */
export function loneLeader(o: LoneOptions = {}): RaftNode {
  const id = o.id ?? "a";
  const voters = o.voters ?? ["a", "b", "c"];
  const core = lone({ ...o, id, voters });
  for (let i = 0; i < 100 && core.status().role === "follower"; i++) core.tick();
  const term = core.status().term;
  drain(core);
  for (const v of voters) {
    if (v === id || core.status().role === "leader") continue;
    core.step(msg({ type: MessageType.VoteResp, from: v, to: id, term }));
  }
  drain(core);
  if (core.status().role !== "leader") throw new Error(`${id} did not become leader`);
  return core;
}

/** Acknowledge, as follower `from`, that its log matches the leader's up to `index`. */
export function ack(core: RaftNode, from: string, index: number): void {
  core.step(msg({ type: MessageType.AppendResp, from, to: core.id, term: core.status().term, index }));
}

export const appendsTo = (ms: Message[], to: string): Message[] =>
  ms.filter((m) => m.type === MessageType.Append && m.to === to);
