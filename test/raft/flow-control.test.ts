import test from "ava";
import {
  ConfChangeType,
  DEFAULT_INFLIGHT_BYTES_MAX,
  DEFAULT_UNCOMMITTED_BYTES_MAX,
  EntryType,
  MessageType,
  RaftError,
  bootstrapSnapshot,
  type Entry,
  type Message,
} from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { Cluster } from "./raft-harness.js";
import { msg } from "./forge.js";

const n = (size: number): Uint8Array => new Uint8Array(size).fill(0x61);

/** Leader a replicating to b and c, then b's acks dropped so what is sent to b stays in flight. */
function leaderWithDeafB(config: ConstructorParameters<typeof Cluster>[1]): Cluster {
  const c = new Cluster(["a", "b", "c"], { batchEntriesMax: 1, ...config });
  c.campaign("a");
  c.pump();
  c.filter = (m) => !(m.type === MessageType.AppendResp && m.from === "b");
  return c;
}

const progressOfB = (c: Cluster) => c.node("a").core.status().progress.b!;

test("in-flight bytes: the leader stops sending to a follower once inflightBytesMax bytes are unacknowledged", (t) => {
  const c = leaderWithDeafB({ inflightBytesMax: 10 });
  t.is(progressOfB(c).state, "replicate");
  for (let i = 0; i < 5; i++) c.node("a").core.propose(n(4));
  c.pump();
  // 4 + 4 + 4 = 12 >= 10: the third append fills the window, the last two wait.
  t.like(progressOfB(c), { inflight: 3, inflightBytes: 12, next: 5 });
  t.is(c.node("b").core.status().lastIndex, 4);
  t.is(c.node("c").core.status().lastIndex, 6, "another follower is not held back");
  // Acks flow again: the window drains and b catches up.
  c.filter = null;
  c.tickAll(1);
  t.is(c.node("b").core.status().lastIndex, 6);
  t.like(progressOfB(c), { inflight: 0, inflightBytes: 0, match: 6 });
});

test("in-flight bytes: one entry larger than the window still goes out when nothing is in flight", (t) => {
  const c = leaderWithDeafB({ inflightBytesMax: 10 });
  c.node("a").core.propose(n(50));
  c.node("a").core.propose(n(1));
  c.pump();
  t.like(progressOfB(c), { inflight: 1, inflightBytes: 50 });
  t.is(c.node("b").core.status().lastIndex, 2);
});

test("in-flight bytes: an ack frees the appends it covers, byte for byte, and the window refills", (t) => {
  const c = leaderWithDeafB({ inflightBytesMax: 10 });
  for (let i = 0; i < 6; i++) c.node("a").core.propose(n(i + 1)); // indexes 2..7, 1..6 bytes
  c.pump();
  // 1 + 2 + 3 + 4 = 10: full after four.
  t.like(progressOfB(c), { inflight: 4, inflightBytes: 10, next: 6 });
  c.node("a").core.step({ ...ack("b", 3), term: c.node("a").core.status().term });
  // Indexes 2 and 3 (1 + 2 bytes) freed; 6 and 7 (5 + 6 bytes) sent: 3 + 4 + 5 = 12 >= 10 after index 6.
  t.like(progressOfB(c), { inflight: 3, inflightBytes: 12, next: 7 });
});

test("in-flight bytes: a heartbeat ack while the window is full frees the oldest append only", (t) => {
  const c = leaderWithDeafB({ inflightBytesMax: 10 });
  for (let i = 0; i < 4; i++) c.node("a").core.propose(n(5)); // indexes 2..5
  c.pump();
  t.like(progressOfB(c), { inflight: 2, inflightBytes: 10, next: 4 });
  const term = c.node("a").core.status().term;
  c.node("a").core.step({ ...ack("b", 0), type: MessageType.HeartbeatResp, term });
  t.like(progressOfB(c), { inflight: 2, inflightBytes: 10, next: 5 }, "one freed, one more sent");
  // Not full: a heartbeat ack frees nothing.
  const c2 = leaderWithDeafB({ inflightBytesMax: 10 });
  c2.node("a").core.propose(n(3));
  c2.pump();
  c2.node("a").core.step({ ...ack("b", 0), type: MessageType.HeartbeatResp, term });
  t.like(progressOfB(c2), { inflight: 1, inflightBytes: 3 });
});

test("in-flight bytes: a follower leaving replicate state (a rejection) starts its next window empty", (t) => {
  const c = leaderWithDeafB({ inflightBytesMax: 10 });
  for (let i = 0; i < 3; i++) c.node("a").core.propose(n(4));
  c.pump();
  t.like(progressOfB(c), { inflight: 3, inflightBytes: 12 });
  const term = c.node("a").core.status().term;
  c.node("a").core.step({ ...ack("b", 3), term, reject: true, rejectHint: 1 });
  t.like(progressOfB(c), { state: "probe", inflight: 0, inflightBytes: 0 });
  c.filter = null;
  c.tickAll(1);
  t.like(progressOfB(c), { state: "replicate", inflight: 0, inflightBytes: 0, match: 4 });
});

test("in-flight count: inflightMax still bounds the window when bytes do not", (t) => {
  const c = leaderWithDeafB({ inflightMax: 2, inflightBytesMax: 1000 });
  for (let i = 0; i < 4; i++) c.node("a").core.propose(n(1));
  c.pump();
  t.like(progressOfB(c), { inflight: 2, inflightBytes: 2 });
});

test("in-flight bytes default: DEFAULT_INFLIGHT_BYTES_MAX", (t) => {
  const c = leaderWithDeafB({});
  c.node("a").core.propose(n(DEFAULT_INFLIGHT_BYTES_MAX - 1));
  c.node("a").core.propose(n(1));
  c.node("a").core.propose(n(1));
  c.pump();
  t.like(progressOfB(c), { inflight: 2, inflightBytes: DEFAULT_INFLIGHT_BYTES_MAX });
});

// ---------------------------------------------------------------- uncommitted bytes

function isolatedLeader(config: ConstructorParameters<typeof Cluster>[1]): Cluster {
  const c = new Cluster(["a", "b", "c"], config);
  c.campaign("a");
  c.isolate("a");
  return c;
}

function refusal(fn: () => unknown): { code: string; reason: string | null } {
  try {
    fn();
  } catch (e) {
    if (e instanceof RaftError) return { code: e.code, reason: e.reason };
    throw e;
  }
  return { code: "none", reason: null };
}

test("uncommitted bytes: proposals beyond uncommittedBytesMax are dropped with a code; empty ones and exact fits pass", (t) => {
  const c = isolatedLeader({ uncommittedBytesMax: 10 });
  const a = c.node("a").core;
  a.propose(n(4));
  a.propose(n(4));
  t.is(a.status().uncommittedBytes, 8);
  a.propose(n(2)); // exactly 10
  t.is(a.status().uncommittedBytes, 10);
  const last = a.status().lastIndex;
  t.deepEqual(
    refusal(() => a.propose(n(1))),
    { code: "PROPOSAL_DROPPED", reason: "UNCOMMITTED_BYTES_FULL" },
  );
  t.is(a.status().lastIndex, last, "nothing appended");
  a.propose(n(0));
  t.is(a.status().lastIndex, last + 1, "an empty proposal always fits");
  // Once the tail commits, proposals are taken again.
  c.heal();
  c.tickAll(2);
  t.is(a.status().uncommittedBytes, 0);
  t.is(a.status().commit, a.status().lastIndex);
  a.propose(n(10));
  t.is(a.status().uncommittedBytes, 10);
});

test("uncommitted bytes: one proposal of any size is taken when nothing is uncommitted", (t) => {
  const c = isolatedLeader({ uncommittedBytesMax: 10 });
  const a = c.node("a").core;
  a.propose(n(50));
  t.is(a.status().uncommittedBytes, 50);
  t.deepEqual(
    refusal(() => a.propose(n(1))),
    { code: "PROPOSAL_DROPPED", reason: "UNCOMMITTED_BYTES_FULL" },
  );
  a.propose(n(0));
  t.is(a.status().uncommittedBytes, 50, "an empty proposal passes even beyond the bound");
});

test("uncommitted bytes: a membership change's context counts, and is refused beyond the bound", (t) => {
  const c = isolatedLeader({ uncommittedBytesMax: 10 });
  const a = c.node("a").core;
  a.propose(n(4));
  const add = { type: ConfChangeType.AddLearner, nodeId: "d", context: n(7) };
  c.heal();
  c.pump();
  c.isolate("a");
  a.propose(n(4));
  t.deepEqual(
    refusal(() => a.proposeConfChange(add)),
    {
      code: "PROPOSAL_DROPPED",
      reason: "UNCOMMITTED_BYTES_FULL",
    },
  );
  a.proposeConfChange({ ...add, context: n(6) });
  t.is(a.status().uncommittedBytes, 10);
});

test("uncommitted bytes: commit subtracts exactly what it covers", (t) => {
  const c = new Cluster(["a", "b", "c"], { uncommittedBytesMax: 100 });
  c.campaign("a");
  const a = c.node("a").core;
  c.isolate("a");
  a.propose(n(3));
  a.propose(n(5));
  // Only the first entry reaches b: commit covers it (3 bytes) and not the second.
  const firstIndex = a.status().lastIndex - 1;
  c.heal();
  c.filter = (m) => m.type !== MessageType.Append || m.entries.every((e) => e.index <= firstIndex);
  c.cut("a", "c");
  c.node("a").core.step({ ...ack("b", firstIndex), term: a.status().term });
  c.pump();
  t.is(a.status().commit, firstIndex);
  t.is(a.status().uncommittedBytes, 5);
});

test("uncommitted bytes: a new leader counts the uncommitted tail it inherits; a follower counts nothing", (t) => {
  const entries: Entry[] = [
    { index: 1, term: 1, type: EntryType.Normal, data: n(4), confChange: null, confState: null },
    { index: 2, term: 1, type: EntryType.Normal, data: n(6), confChange: null, confState: null },
  ];
  const disk = new SimDisk(bootstrapSnapshot(["a"]));
  disk.hardState = { term: 1, vote: null, commit: 0 };
  disk.entries = entries;
  const c = new Cluster([], { uncommittedBytesMax: 12 });
  const a = c.add("a", disk);
  t.is(a.core.status().uncommittedBytes, 0, "a follower counts nothing");
  for (let i = 0; i < 40 && a.core.status().role !== "leader"; i++) a.core.tick();
  t.is(a.core.status().role, "leader");
  t.is(a.core.status().uncommittedBytes, 10);
  t.deepEqual(
    refusal(() => a.core.propose(n(3))),
    { code: "PROPOSAL_DROPPED", reason: "UNCOMMITTED_BYTES_FULL" },
  );
  c.drainOne(a);
  t.is(a.core.status().commit, 3);
  t.is(a.core.status().uncommittedBytes, 0);
});

test("uncommitted bytes: a leader that steps down forgets its count", (t) => {
  const c = isolatedLeader({ uncommittedBytesMax: 100 });
  const a = c.node("a").core;
  a.propose(n(9));
  const term = a.status().term;
  a.step({ ...ack("b", 0), type: MessageType.Heartbeat, term: term + 1 });
  t.is(a.status().role, "follower");
  t.is(a.status().uncommittedBytes, 0);
});

test("uncommitted bytes default: DEFAULT_UNCOMMITTED_BYTES_MAX", (t) => {
  const c = isolatedLeader({});
  const a = c.node("a").core;
  a.propose(n(DEFAULT_UNCOMMITTED_BYTES_MAX - 1));
  a.propose(n(1));
  t.deepEqual(
    refusal(() => a.propose(n(1))),
    { code: "PROPOSAL_DROPPED", reason: "UNCOMMITTED_BYTES_FULL" },
  );
});

test("byte bounds in the config must be integers >= 1", (t) => {
  for (const bad of [{ inflightBytesMax: 0 }, { uncommittedBytesMax: 0 }, { inflightBytesMax: 1.5 }]) {
    t.is(refusal(() => new Cluster(["a"], bad)).code, "BAD_ARGUMENT", JSON.stringify(bad));
  }
  t.is(refusal(() => new Cluster(["a"], { inflightBytesMax: 1, uncommittedBytesMax: 1 })).code, "none");
});

function ack(from: string, index: number): Message {
  return msg({ type: MessageType.AppendResp, from, to: "a", term: 0, index });
}
