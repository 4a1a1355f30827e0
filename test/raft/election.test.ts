import test from "ava";
import { MessageType } from "../../cluster/raft/core/index.js";
import { Cluster } from "./raft-harness.js";

test("a single voter elects itself and commits an entry of its term", (t) => {
  const c = new Cluster(["a"]);
  c.campaign("a");
  const st = c.node("a").core.status();
  t.is(st.role, "leader");
  t.is(st.term, 1);
  t.is(st.commit, 1);
});

test("three voters elect exactly one leader that every node follows", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  t.is(c.node("a").core.status().role, "leader");
  for (const id of ["b", "c"]) {
    const st = c.node(id).core.status();
    t.is(st.role, "follower");
    t.is(st.leader, "a");
    t.is(st.term, 1);
    t.is(st.vote, "a");
  }
});

test("a vote response leaves only in a Ready whose hard state records the vote", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  const b = c.node("b");
  const rd = b.readies.find((r) => r.messages.some((m) => m.type === MessageType.VoteResp && !m.reject));
  t.truthy(rd);
  t.deepEqual(rd!.hardState, { term: 1, vote: "a", commit: 0 });
  t.true(rd!.mustSync);
  t.is(b.disk.hardState.vote, "a");
});

test("the voteBeforePersist bug hands out a vote whose hard state forgets it", (t) => {
  const c = new Cluster(["a", "b", "c"], { bugs: { voteBeforePersist: true } });
  c.campaign("a");
  t.is(c.node("b").disk.hardState.vote, null);
  t.is(c.node("b").disk.hardState.term, 1);
});

test("a voter rejects a candidate whose log is behind its own", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.node("a").core.propose(new Uint8Array([1]));
  c.pump();
  // c misses the next entry; b and a have it.
  c.cut("a", "c");
  c.node("a").core.propose(new Uint8Array([2]));
  c.pump();
  c.heal();
  c.isolate("a");
  c.campaign("c");
  t.not(c.node("c").core.status().role, "leader");
  const rejections = c.delivered.filter(
    (m) => m.type === MessageType.VoteResp && m.from === "b" && m.to === "c",
  );
  t.true(rejections.length > 0 && rejections.every((m) => m.reject));
});

test("without pre-vote an isolated node inflates its term; with pre-vote it does not", (t) => {
  for (const preVote of [false, true]) {
    const c = new Cluster(["a", "b", "c"], { preVote });
    c.campaign("a");
    c.isolate("c");
    for (let i = 0; i < 100; i++) {
      c.node("c").core.tick();
      c.pump();
    }
    const term = c.node("c").core.status().term;
    if (preVote) t.is(term, 1, "pre-vote keeps the term");
    else t.true(term > 3, `term grew to ${term}`);
    c.heal();
    c.tickAll(30);
    t.truthy(c.leader());
  }
});

test("check-quorum: a leader that cannot reach a quorum steps down within two election timeouts", (t) => {
  const c = new Cluster(["a", "b", "c"], { checkQuorum: true });
  c.campaign("a");
  c.isolate("a");
  for (let i = 0; i < 20; i++) {
    c.node("a").core.tick();
    c.pump();
  }
  t.is(c.node("a").core.status().role, "follower");
});

test("check-quorum leader lease: followers ignore a disruptive candidate while the leader is alive", (t) => {
  const c = new Cluster(["a", "b", "c"], { checkQuorum: true });
  c.campaign("a");
  // c cannot hear the leader, so it campaigns; b still hears a, so it ignores c.
  c.cut("a", "c");
  for (let i = 0; i < 25; i++) {
    for (const id of ["a", "c"]) c.node(id).core.tick();
    c.pump();
  }
  t.is(c.node("a").core.status().role, "leader");
  t.is(c.node("b").core.status().leader, "a");
  t.is(c.node("b").core.status().term, 1);
});

test("a restarted node keeps its term and vote from disk", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  const b = c.restart("b");
  const st = b.core.status();
  t.is(st.term, 1);
  t.is(st.vote, "a");
  t.is(st.commit, c.node("b").disk.hardState.commit);
});

test("a restart after entries of a newer term were stored but not the hard state adopts that term, unvoted", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  const b = c.node("b");
  b.disk.hardState = { term: 0, vote: null, commit: 0 }; // as if the crash hit between Ready steps 1b and 1c
  const r = c.restart("b");
  t.is(r.core.status().term, 1);
  t.is(r.core.status().vote, null);
  t.is(r.core.ready()?.hardState?.term, 1, "the adopted term is persisted by the next Ready");
});
