import test from "ava";
import { MessageType, type Message } from "../../cluster/raft/core/index.js";
import { drain, entries, lone, loneLeader, msg, sent } from "./lone-node.js";

/** Follower b of term 2 with log [1t1 2t2], never voted in term 2. */
function voter(over: Parameters<typeof lone>[0] = {}) {
  const b = lone({ id: "b", entries: entries(1, 2), term: 2, commit: 0, ...over });
  drain(b);
  return b;
}
const vote = (
  from: string,
  term: number,
  index: number,
  logTerm: number,
  type: Message["type"] = MessageType.Vote,
) => msg({ type, from, to: "b", term, index, logTerm });
const answer = (ms: Message[]) => {
  if (ms.length !== 1) throw new Error(`expected one answer, got ${ms.length}`);
  return ms[0]!;
};

test("a vote is granted to a candidate whose log is at least as up to date, with the candidate's term", (t) => {
  const rows: [number, number, boolean][] = [
    // candidate's last index, last term, granted?
    [2, 2, true], // same
    [5, 2, true], // longer, same term
    [1, 3, true], // shorter but newer last term
    [1, 2, false], // same term, shorter
    [9, 1, false], // longer but older last term
  ];
  for (const [index, logTerm, granted] of rows) {
    const b = voter();
    b.step(vote("c", 3, index, logTerm));
    const r = answer(sent(b));
    t.is(r.type, MessageType.VoteResp);
    t.is(r.reject, !granted, `last (${index}, ${logTerm})`);
    t.is(r.term, 3);
    t.is(b.status().term, 3, "the newer term is adopted either way");
    t.is(b.status().vote, granted ? "c" : null);
  }
});

test("one vote per term: a second candidate is refused, the same candidate asking again is granted again", (t) => {
  const b = voter();
  b.step(vote("c", 3, 2, 2));
  drain(b);
  b.step(vote("a", 3, 2, 2));
  t.true(answer(sent(b)).reject);
  b.step(vote("c", 3, 2, 2));
  t.false(answer(sent(b)).reject);
  t.is(b.status().vote, "c");
});

test("the granted vote is in the hard state handed out with the answer, and a vote resets the election timer", (t) => {
  const b = voter();
  for (let i = 0; i < 9; i++) b.tick(); // one tick short of campaigning
  b.step(vote("c", 3, 2, 2));
  const rd = b.ready()!;
  t.deepEqual(rd.hardState, { term: 3, vote: "c", commit: 0 });
  b.advance(rd);
  for (let i = 0; i < 9; i++) b.tick();
  t.is(b.status().role, "follower", "the timer restarted at the vote");
  b.tick();
  t.is(b.status().role, "candidate");
});

test("a follower of a known leader refuses a vote in the same term", (t) => {
  const b = voter();
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 2 }));
  drain(b);
  b.step(vote("c", 2, 9, 2));
  t.true(answer(sent(b)).reject);
  t.is(b.status().vote, null);
});

test("pre-vote: granted for a newer term and an up-to-date log without changing term, vote or timer", (t) => {
  const b = voter();
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 2 }));
  drain(b);
  for (let i = 0; i < 5; i++) b.tick();
  b.step(vote("c", 3, 2, 2, MessageType.PreVote));
  const r = answer(sent(b));
  t.is(r.type, MessageType.PreVoteResp);
  t.false(r.reject);
  t.is(r.term, 3, "the granted pre-vote carries the term asked for");
  t.is(b.status().term, 2);
  t.is(b.status().vote, null);
  t.is(b.status().leader, "a", "a pre-vote does not make a follower forget its leader");
  for (let i = 0; i < 5; i++) b.tick();
  t.is(b.status().role, "candidate", "the timer was not reset by the pre-vote");
  const stale = voter();
  stale.step(vote("c", 3, 1, 2, MessageType.PreVote));
  const no = answer(sent(stale));
  t.true(no.reject);
  t.is(no.term, 2);
});

test("messages of an older term are answered with the newer term so the sender can catch up, and change nothing", (t) => {
  const rows: [Message["type"], Message["type"]][] = [
    [MessageType.Append, MessageType.AppendResp],
    [MessageType.Heartbeat, MessageType.AppendResp],
    [MessageType.PreVote, MessageType.PreVoteResp],
    [MessageType.Vote, MessageType.VoteResp],
  ];
  for (const [type, resp] of rows) {
    const b = voter();
    b.step(msg({ type, from: "a", to: "b", term: 1, index: 5, logTerm: 1 }));
    const r = answer(sent(b));
    t.is(r.type, resp);
    t.is(r.term, 2);
    if (type !== MessageType.Append && type !== MessageType.Heartbeat) t.true(r.reject);
    t.is(b.status().term, 2);
    t.is(b.status().leader, null);
  }
  const b = voter();
  b.step(msg({ type: MessageType.AppendResp, from: "a", to: "b", term: 1 }));
  t.deepEqual(sent(b), [], "an old answer is dropped silently");
});

test("a message of a newer term makes the node follow: its sender as leader for appends, no one otherwise", (t) => {
  const rows: [Message["type"], string | null][] = [
    [MessageType.Append, "a"],
    [MessageType.Heartbeat, "a"],
    [MessageType.AppendResp, null],
    [MessageType.VoteResp, null],
    [MessageType.HeartbeatResp, null],
  ];
  for (const [type, leader] of rows) {
    const b = voter();
    b.step(msg({ type, from: "a", to: "b", term: 5, index: 2, logTerm: 2, reject: true }));
    t.is(b.status().term, 5, `type ${type}`);
    t.is(b.status().leader, leader, `type ${type}`);
    t.is(b.status().role, "follower");
  }
});

test("a pre-vote request or a granted pre-vote answer of a newer term does not change the term", (t) => {
  const b = voter();
  b.step(vote("c", 7, 1, 1, MessageType.PreVote));
  t.is(b.status().term, 2);
  const p = lone({ id: "b", entries: entries(1, 2), term: 2, config: { preVote: true } });
  for (let i = 0; i < 10; i++) p.tick();
  t.is(p.status().role, "preCandidate");
  t.is(p.status().term, 2, "pre-vote does not bump the term");
  const pre = drain(p).flatMap((r) => r.messages);
  t.deepEqual(
    pre.map((m) => [m.type, m.term]),
    [
      [MessageType.PreVote, 3],
      [MessageType.PreVote, 3],
    ],
  );
  p.step(msg({ type: MessageType.PreVoteResp, from: "a", to: "b", term: 3 }));
  t.is(p.status().role, "candidate", "a quorum of pre-votes starts the real election");
  t.is(p.status().term, 3);
  t.deepEqual(
    sent(p).map((m) => [m.type, m.term]),
    [
      [MessageType.Vote, 3],
      [MessageType.Vote, 3],
    ],
  );
});

test("a refused pre-vote of a newer term makes the pre-candidate adopt that term and stop", (t) => {
  const p = lone({ id: "b", entries: entries(1, 2), term: 2, config: { preVote: true } });
  for (let i = 0; i < 10; i++) p.tick();
  drain(p);
  p.step(msg({ type: MessageType.PreVoteResp, from: "a", to: "b", term: 4, reject: true }));
  t.is(p.status().role, "follower");
  t.is(p.status().term, 4);
});

test("a candidate that a majority refuses goes back to follower in the same term", (t) => {
  const a = lone({ id: "a", voters: ["a", "b", "c", "d", "e"] });
  for (let i = 0; i < 10; i++) a.tick();
  drain(a);
  a.step(msg({ type: MessageType.VoteResp, from: "b", to: "a", term: 1, reject: true }));
  a.step(msg({ type: MessageType.VoteResp, from: "c", to: "a", term: 1, reject: true }));
  t.is(a.status().role, "candidate", "2 of 5 refused: it can still win");
  a.step(msg({ type: MessageType.VoteResp, from: "c", to: "a", term: 1, reject: false }));
  t.is(a.status().role, "candidate", "a voter's first answer counts, a second one does not");
  a.step(msg({ type: MessageType.VoteResp, from: "d", to: "a", term: 1, reject: true }));
  t.is(a.status().role, "follower");
  t.deepEqual(a.ready()?.softState, { leader: null, role: "follower" }, "the role change alone is a Ready");
  t.is(a.status().term, 1);
  t.is(a.status().leader, null);
});

test("a candidate wins with a majority of five and ignores answers of the wrong kind", (t) => {
  const a = lone({ id: "a", voters: ["a", "b", "c", "d", "e"] });
  for (let i = 0; i < 10; i++) a.tick();
  drain(a);
  a.step(msg({ type: MessageType.PreVoteResp, from: "b", to: "a", term: 1 }));
  a.step(msg({ type: MessageType.PreVoteResp, from: "c", to: "a", term: 1 }));
  t.is(a.status().role, "candidate", "pre-vote answers do not count in a real election");
  a.step(msg({ type: MessageType.VoteResp, from: "b", to: "a", term: 1 }));
  t.is(a.status().role, "candidate", "2 of 5");
  a.step(msg({ type: MessageType.VoteResp, from: "c", to: "a", term: 1 }));
  t.is(a.status().role, "leader", "3 of 5");
});

test("a candidate hearing the leader of its term becomes its follower and takes the append", (t) => {
  const a = lone({ id: "a", entries: entries(1), term: 1 });
  for (let i = 0; i < 10; i++) a.tick();
  drain(a);
  t.is(a.status().term, 2);
  a.step(msg({ type: MessageType.Append, from: "b", to: "a", term: 2, index: 1, logTerm: 1, entries: [] }));
  t.is(a.status().role, "follower");
  t.is(a.status().leader, "b");
  t.like(sent(a)[0], { type: MessageType.AppendResp, index: 1, reject: false });
});

test("TimeoutNow makes a voter campaign at once in a new term, through another voter's leader lease", (t) => {
  const b = lone({ id: "b", entries: entries(1), term: 1, config: { checkQuorum: true, preVote: true } });
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
  drain(b);
  b.step(msg({ type: MessageType.TimeoutNow, from: "a", to: "b", term: 1 }));
  t.is(b.status().role, "candidate", "no pre-vote round");
  t.is(b.status().term, 2);
  const votes = sent(b).filter((m) => m.type === MessageType.Vote);
  t.is(votes.length, 2);
  // c follows a and is within its lease, but a transfer's vote request goes through.
  const c = lone({ id: "c", entries: entries(1), term: 1, config: { checkQuorum: true, preVote: true } });
  c.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(c);
  c.step({ ...votes.find((m) => m.to === "c")! });
  const r = sent(c)[0]!;
  t.is(r.type, MessageType.VoteResp);
  t.false(r.reject);
  t.is(c.status().term, 2);
  // The same request without the transfer mark is ignored inside the lease.
  const d = lone({ id: "c", entries: entries(1), term: 1, config: { checkQuorum: true, preVote: true } });
  d.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(d);
  d.step({ ...votes.find((m) => m.to === "c")!, context: new Uint8Array(0) });
  t.deepEqual(sent(d), []);
  t.is(d.status().term, 1);
});

test("a learner ignores TimeoutNow", (t) => {
  const d = lone({ id: "d", learners: ["d"], entries: entries(1), term: 1 });
  d.step(msg({ type: MessageType.Heartbeat, from: "a", to: "d", term: 1 }));
  drain(d);
  d.step(msg({ type: MessageType.TimeoutNow, from: "a", to: "d", term: 1 }));
  t.is(d.status().role, "follower");
  t.is(d.status().term, 1);
});

test("the leader lease ends after an election timeout without the leader: then a vote is considered", (t) => {
  const c = lone({ id: "c", entries: entries(1), term: 1, config: { checkQuorum: true } });
  c.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(c);
  for (let i = 0; i < 9; i++) c.tick();
  c.step({ ...vote("b", 2, 1, 1), to: "c" });
  t.deepEqual(
    sent(c)
      .map((m) => m.to)
      .filter((to) => to === "b"),
    [],
    "still in the lease at 9 ticks",
  );
  const c2 = lone({
    id: "c",
    entries: entries(1),
    term: 1,
    config: { checkQuorum: true, random: { nextInt: (n) => n - 1 } },
  });
  c2.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(c2);
  for (let i = 0; i < 10; i++) c2.tick();
  c2.step({ ...vote("b", 2, 1, 1), to: "c" });
  const r = sent(c2).find((m) => m.type === MessageType.VoteResp)!;
  t.false(r.reject);
  t.is(c2.status().vote, "b");
});

test("a leader's heartbeats go out every heartbeatTicks and tell each follower to commit only what it holds", (t) => {
  const a = loneLeader({ config: { heartbeatTicks: 2, electionTicks: 10 } });
  a.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 1 }));
  drain(a);
  t.is(a.status().commit, 1);
  a.tick();
  t.deepEqual(
    sent(a).filter((m) => m.type === MessageType.Heartbeat),
    [],
    "not after one tick",
  );
  a.tick();
  const hb = sent(a).filter((m) => m.type === MessageType.Heartbeat);
  t.deepEqual(hb.map((m) => [m.to, m.commit]).sort(), [
    ["b", 1],
    ["c", 0],
  ]);
});

test("a pre-vote for the voter's own term is refused when it follows a leader or voted for another", (t) => {
  const b = voter();
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 2 }));
  drain(b);
  b.step(vote("c", 2, 9, 2, MessageType.PreVote));
  const r = answer(sent(b));
  t.is(r.type, MessageType.PreVoteResp);
  t.true(r.reject);
});

test("only a real vote request carries a transfer through the lease: a pre-vote with the mark is still ignored", (t) => {
  const c = lone({ id: "c", entries: entries(1), term: 1, config: { checkQuorum: true, preVote: true } });
  c.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(c);
  c.step(
    msg({
      type: MessageType.PreVote,
      from: "b",
      to: "c",
      term: 2,
      index: 1,
      logTerm: 1,
      context: new Uint8Array([0x74]),
    }),
  );
  t.deepEqual(sent(c), []);
});

test("a leader refuses a vote request of its own term, however long the candidate's log", (t) => {
  const a = loneLeader();
  a.step(msg({ type: MessageType.Vote, from: "c", to: "a", term: 1, index: 50, logTerm: 1 }));
  const r = answer(sent(a));
  t.is(r.type, MessageType.VoteResp);
  t.true(r.reject);
  t.is(a.status().role, "leader");
});

test("a refused vote request of a newer term adopts the term but does not restart the election timer", (t) => {
  // Raft fig. 2: only a granted vote or a leader's message restarts it. Otherwise stale candidates,
  // campaigning in turn, keep the one node whose log could win from ever timing out.
  const b = voter();
  for (let i = 0; i < 9; i++) b.tick(); // one tick short of campaigning
  b.step(vote("c", 3, 1, 2)); // c's log is behind b's
  const r = answer(sent(b));
  t.true(r.reject);
  t.is(b.status().term, 3);
  t.is(b.status().role, "follower");
  b.tick();
  t.is(b.status().role, "candidate", "the timer ran on through the refused request");
  t.is(b.status().term, 4);
});

test("a learner's leader lease ends when its leader goes quiet, so it answers the pre-vote of a voter that promoted it", (t) => {
  // c is a learner in its own log; a holds c's promotion, which c has not received, and needs its vote.
  const c = lone({
    id: "c",
    voters: ["a"],
    learners: ["b", "c"],
    entries: entries(1),
    term: 1,
    config: { checkQuorum: true, preVote: true, random: { nextInt: () => 0 } },
  });
  c.step(msg({ type: MessageType.Heartbeat, from: "a", to: "c", term: 1 }));
  drain(c);
  for (let i = 0; i < 50; i++) c.tick(); // a crashed: nothing more from it
  c.step({ ...vote("a", 2, 1, 1, MessageType.PreVote), to: "c" });
  const r = answer(sent(c));
  t.is(r.type, MessageType.PreVoteResp);
  t.false(r.reject, "no lease left after five election timeouts of silence");
  t.is(c.status().role, "follower", "a learner never campaigns itself");
});
