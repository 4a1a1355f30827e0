import test from "ava";
import {
  ConfChangeType,
  EntryType,
  MessageType,
  RaftError,
  applyConfChange,
  type ConfChange,
  type ConfState,
  type Entry,
} from "../../cluster/raft/core/index.js";
import { NODE_ID_CHARS_MAX } from "../../cluster/node-id.js";
import { ack, drain, entry, lone, loneLeader, msg, sent } from "./lone-node.js";

const cc = (type: number, nodeId: unknown, context: unknown = new Uint8Array(0)): ConfChange =>
  ({ type, nodeId, context }) as ConfChange;
const cs = (voters: string[], learners: string[] = []): ConfState => ({ voters, learners });

test("applyConfChange: each single-server change gives exactly the next configuration", (t) => {
  const rows: [ConfState, ConfChange, ConfState][] = [
    [cs(["a", "b"]), cc(ConfChangeType.AddLearner, "d"), cs(["a", "b"], ["d"])],
    [cs(["a"], ["x", "y"]), cc(ConfChangeType.AddLearner, "z"), cs(["a"], ["x", "y", "z"])],
    [cs(["a"], ["x", "y", "z"]), cc(ConfChangeType.PromoteLearner, "y"), cs(["a", "y"], ["x", "z"])],
    [cs(["a", "b", "c"]), cc(ConfChangeType.RemoveNode, "b"), cs(["a", "c"])],
    [cs(["a", "b"], ["x", "y", "z"]), cc(ConfChangeType.RemoveNode, "y"), cs(["a", "b"], ["x", "z"])],
    [cs(["a", "b"]), cc(ConfChangeType.RemoveNode, "a"), cs(["b"])],
    [
      cs(["a"]),
      cc(ConfChangeType.AddLearner, "x".repeat(NODE_ID_CHARS_MAX)),
      cs(["a"], ["x".repeat(NODE_ID_CHARS_MAX)]),
    ],
  ];
  for (const [before, change, after] of rows) {
    const copy = structuredClone(before);
    t.deepEqual(applyConfChange(before, change), after, JSON.stringify(change.nodeId).slice(0, 20));
    t.deepEqual(before, copy, "the input configuration is not changed");
  }
});

test("applyConfChange refuses every change that cannot apply with BAD_CONF_CHANGE", (t) => {
  const rows: [ConfState, unknown][] = [
    [cs(["a"]), null],
    [cs(["a"]), "add d"],
    [cs(["a"]), cc(ConfChangeType.AddLearner, "")],
    [cs(["a"]), cc(ConfChangeType.AddLearner, 5)],
    [cs(["a"]), cc(ConfChangeType.AddLearner, "d\n")],
    [cs(["a"]), cc(ConfChangeType.AddLearner, "x".repeat(NODE_ID_CHARS_MAX + 1))],
    [cs(["a"]), cc(ConfChangeType.AddLearner, "d", "ctx")],
    [cs(["a"]), cc(ConfChangeType.AddLearner, "a")],
    [cs(["a"], ["d"]), cc(ConfChangeType.AddLearner, "d")],
    [cs(["a", "b"]), cc(ConfChangeType.PromoteLearner, "b")],
    [cs(["a"]), cc(ConfChangeType.PromoteLearner, "zz")],
    [cs(["a"]), cc(ConfChangeType.RemoveNode, "a")],
    [cs(["a", "b"]), cc(ConfChangeType.RemoveNode, "zz")],
    [cs(["a"]), cc(0, "d")],
    [cs(["a"]), cc(4, "d")],
  ];
  for (const [before, change] of rows) {
    const err = t.throws(
      () => applyConfChange(before, change as ConfChange),
      undefined,
      JSON.stringify(change),
    );
    t.true(err instanceof RaftError);
    t.is((err as RaftError).code, "BAD_CONF_CHANGE", JSON.stringify(change));
  }
});

test("a leader proposes a change as a ConfChange entry carrying the change and the resulting configuration", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  const ctx = new Uint8Array([9, 9]);
  const pos = a.proposeConfChange(cc(ConfChangeType.AddLearner, "d", ctx));
  const rds = drain(a);
  const e = rds.flatMap((r) => r.entries).find((x) => x.index === pos.index)!;
  t.is(e.type, EntryType.ConfChange);
  t.deepEqual(e.confChange, { type: ConfChangeType.AddLearner, nodeId: "d", context: ctx });
  t.deepEqual(e.confState, cs(["a", "b", "c"], ["d"]));
  t.is(e.data.length, 0);
  t.is(pos.term, 1);
  t.like(a.status().progress.d, { match: 0, state: "probe" }, "the new member is tracked at once");
  t.true(
    rds.flatMap((r) => r.messages).some((m) => m.to === "d" && m.type === MessageType.Append),
    "and replicated to",
  );
});

test("a new leader refuses a change until an entry of its own term is committed", (t) => {
  const a = loneLeader();
  const err = t.throws(() => a.proposeConfChange(cc(ConfChangeType.AddLearner, "d")));
  t.is((err as RaftError).code, "CONF_CHANGE_PENDING");
  ack(a, "b", 1);
  drain(a);
  t.notThrows(() => a.proposeConfChange(cc(ConfChangeType.AddLearner, "d")));
});

test("a removed member's progress is dropped, and a transfer to it is cancelled", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  a.transferLeadership("c");
  t.is(a.status().leadTransferee, "c");
  // The transfer blocks proposals; let it lapse first (one election timeout).
  for (let i = 0; i < 10; i++) a.tick();
  drain(a);
  t.is(a.status().leadTransferee, null);
  a.proposeConfChange(cc(ConfChangeType.RemoveNode, "c"));
  drain(a);
  t.deepEqual(Object.keys(a.status().progress), ["b"]);
  t.deepEqual(a.status().confState, cs(["a", "b"]));
});

test("a leader that removed itself refuses proposals and steps down when the removal commits", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  const pos = a.proposeConfChange(cc(ConfChangeType.RemoveNode, "a"));
  drain(a);
  const err = t.throws(() => a.propose(new Uint8Array([1])));
  t.is((err as RaftError).code, "PROPOSAL_DROPPED");
  t.is(a.status().role, "leader", "still leading until the change commits");
  ack(a, "b", pos.index - 1);
  drain(a);
  t.is(a.status().role, "leader", "an ack below the change commits only what precedes it");
  ack(a, "b", pos.index);
  drain(a);
  // Voters are now b and c: b's ack alone is not a quorum of {b, c}... a no longer counts.
  t.is(a.status().role, "leader");
  ack(a, "c", pos.index);
  const st = a.status();
  t.is(st.commit, pos.index);
  t.is(st.role, "follower");
  t.is(st.leader, null);
});

test("once a change is committed the next one is accepted", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  const pos = a.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  drain(a);
  ack(a, "b", pos.index);
  drain(a);
  t.is(a.status().commit, pos.index, "the change is exactly the commit index");
  t.notThrows(() => a.proposeConfChange(cc(ConfChangeType.AddLearner, "e")));
  t.deepEqual(a.status().confState.learners, ["d", "e"]);
});

/** Follower c of term 1 whose log [1t1, 2t1 remove c] holds its own removal, committed up to `commit`. */
function removedFollower(commit: number) {
  const removal: Entry = {
    index: 2,
    term: 1,
    type: EntryType.ConfChange,
    data: new Uint8Array(0),
    confChange: cc(ConfChangeType.RemoveNode, "c"),
    confState: cs(["a", "b"]),
  };
  const c = lone({ id: "c", entries: [entry(1, 1), removal], term: 1, commit });
  drain(c);
  return c;
}

test("a voter whose removal is not committed still campaigns, without its own vote, and steps down once leading commits it", (t) => {
  // Raft dissertation §4.2.2: it may be the only node holding the removal up to date.
  const c = removedFollower(1);
  for (let i = 0; i < 10; i++) c.tick();
  t.is(c.status().role, "candidate");
  const requests = sent(c);
  t.deepEqual(
    requests.map((m) => [m.type, m.to]),
    [
      [MessageType.Vote, "a"],
      [MessageType.Vote, "b"],
    ],
    "asks the voters of its latest configuration only",
  );
  const term = c.status().term;
  c.step(msg({ type: MessageType.VoteResp, from: "a", to: "c", term }));
  t.is(c.status().role, "candidate", "one grant is not a quorum of {a, b}: its own vote does not count");
  c.step(msg({ type: MessageType.VoteResp, from: "b", to: "c", term }));
  t.is(c.status().role, "leader");
  drain(c);
  ack(c, "a", 3);
  ack(c, "b", 3);
  t.is(c.status().commit, 3);
  t.is(c.status().role, "follower", "its removal committed: it hands over");
  for (let i = 0; i < 30; i++) c.tick();
  t.is(c.status().role, "follower", "and never campaigns again");
});

test("a voter whose removal is committed never campaigns", (t) => {
  const c = removedFollower(2);
  for (let i = 0; i < 30; i++) c.tick();
  t.is(c.status().role, "follower");
  t.deepEqual(sent(c), []);
});
