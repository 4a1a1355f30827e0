import test from "ava";
import { MessageType, quorum } from "../../cluster/raft/core/index.js";
import { ack, drain, entries, entry, lone, loneLeader, msg, sent } from "./lone-node.js";

const enc = new TextEncoder();

test("quorum(n) is a strict majority", (t) => {
  t.deepEqual([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
});

test("with five voters an entry commits on the third copy (the leader's included), not the second", (t) => {
  const a = loneLeader({ voters: ["a", "b", "c", "d", "e"] });
  const pos = a.propose(enc.encode("x"));
  drain(a);
  ack(a, "b", pos.index);
  drain(a);
  t.is(a.status().commit, 0);
  ack(a, "c", pos.index);
  drain(a);
  t.is(a.status().commit, pos.index);
});

test("with four voters an entry needs three copies", (t) => {
  const a = loneLeader({ voters: ["a", "b", "c", "d"] });
  ack(a, "b", 1);
  drain(a);
  t.is(a.status().commit, 0);
  ack(a, "d", 1);
  drain(a);
  t.is(a.status().commit, 1);
});

test("commit is the highest index a quorum holds, not the highest any follower holds", (t) => {
  const a = loneLeader();
  for (let i = 0; i < 4; i++) a.propose(enc.encode(`p${i}`)); // 2..5
  drain(a);
  ack(a, "b", 3);
  drain(a);
  t.is(a.status().commit, 3);
  ack(a, "c", 5);
  drain(a);
  t.is(a.status().commit, 5);
});

test("when commit moves the leader tells the followers at once, with the new commit", (t) => {
  const a = loneLeader();
  ack(a, "c", 1);
  a.propose(enc.encode("x")); // 2
  drain(a);
  ack(a, "b", 2);
  const out = sent(a).filter((m) => m.type === MessageType.Append);
  t.true(out.some((m) => m.to === "c" && m.commit === 2));
  t.true(out.some((m) => m.to === "b" && m.commit === 2));
});

test("a new leader commits the old term's entries only through an entry of its own term", (t) => {
  // a holds entries of term 1 and wins term 2: b's ack of the old entries alone commits nothing.
  const a = loneLeader({ entries: entries(1, 1), term: 1 });
  t.is(a.status().term, 2);
  a.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 2, index: 2 }));
  drain(a);
  t.is(a.status().commit, 0);
  ack(a, "b", 3);
  drain(a);
  t.is(a.status().commit, 3);
});

test("a follower commits what the leader says, but never beyond its own log; an older commit changes nothing", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1, 1), term: 1, commit: 1 });
  drain(b);
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1, commit: 9 }));
  t.is(b.status().commit, 3);
  const acks = sent(b);
  t.like(acks[0], { type: MessageType.HeartbeatResp, to: "a" });
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1, commit: 2 }));
  t.is(b.status().commit, 3);
  t.is(b.status().leader, "a");
});

test("a heartbeat keeps a follower from campaigning", (t) => {
  const b = lone({ id: "b", entries: entries(1), term: 1 });
  for (let r = 0; r < 5; r++) {
    for (let i = 0; i < 9; i++) b.tick();
    b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
    drain(b);
  }
  t.is(b.status().role, "follower");
  t.is(b.status().term, 1);
  b.step(
    msg({
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: 1,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 1)],
    }),
  );
  for (let i = 0; i < 9; i++) b.tick();
  t.is(b.status().role, "follower", "an append resets the timer too");
});

test("check-quorum: a leader that heard from a quorum within the timeout stays; one that did not steps down", (t) => {
  const stays = loneLeader({ config: { checkQuorum: true } });
  for (let i = 0; i < 10; i++) {
    stays.tick();
    stays.step(msg({ type: MessageType.HeartbeatResp, from: "b", to: "a", term: 1 }));
    drain(stays);
  }
  t.is(stays.status().role, "leader");
  for (let i = 0; i < 9; i++) stays.tick();
  t.is(stays.status().role, "leader");
  stays.tick();
  t.is(stays.status().role, "leader", "progress counted as active from the last round still");
  for (let i = 0; i < 10; i++) stays.tick();
  t.is(stays.status().role, "follower", "a whole round with no answer");
  t.is(stays.status().leader, null);
  t.is(stays.status().term, 1);
});

test("a leader abandons a transfer that does not finish within an election timeout", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  a.transferLeadership("c"); // c is behind: caught up first
  t.is(a.status().leadTransferee, "c");
  const err = t.throws(() => a.propose(enc.encode("x")));
  t.is((err as { code?: string }).code, "PROPOSAL_DROPPED");
  for (let i = 0; i < 9; i++) a.tick();
  t.is(a.status().leadTransferee, "c");
  a.tick();
  t.is(a.status().leadTransferee, null);
  t.notThrows(() => a.propose(enc.encode("x")));
});

test("a transfer to an up-to-date voter sends TimeoutNow at once; to itself or the same target again, nothing new", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  ack(a, "c", 1);
  drain(a);
  a.transferLeadership("a");
  t.is(a.status().leadTransferee, null);
  a.transferLeadership("b");
  t.deepEqual(
    sent(a).map((m) => [m.type, m.to]),
    [[MessageType.TimeoutNow, "b"]],
  );
  a.transferLeadership("b");
  t.deepEqual(sent(a), []);
  const f = lone({ id: "b" });
  t.is((t.throws(() => f.transferLeadership("c")) as { code?: string }).code, "NOT_LEADER");
});

test("a lagging transfer target gets TimeoutNow once its ack shows it caught up", (t) => {
  const a = loneLeader();
  a.propose(enc.encode("x")); // 2
  ack(a, "b", 2);
  drain(a);
  a.transferLeadership("c");
  const first = sent(a);
  t.false(first.some((m) => m.type === MessageType.TimeoutNow));
  ack(a, "c", 1);
  t.false(
    sent(a).some((m) => m.type === MessageType.TimeoutNow),
    "not yet at the last index",
  );
  ack(a, "c", 2);
  t.true(sent(a).some((m) => m.type === MessageType.TimeoutNow && m.to === "c"));
});
