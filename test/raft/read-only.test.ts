import test from "ava";
import { MessageType, type Message, type RaftNode } from "../../cluster/raft/core/index.js";
import { ack, drain, lone, loneLeader, msg, sent } from "./lone-node.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const ctx = (s: string): Uint8Array => enc.encode(s);

/** Leader a of term 1 over a, b, c (and learner d if asked) whose first entry is committed. */
function leader(learners: string[] = []): RaftNode {
  const a = loneLeader({ learners });
  ack(a, "b", 1);
  drain(a);
  if (a.status().commit !== 1) throw new Error("setup: entry 1 not committed");
  return a;
}
function hbAck(a: RaftNode, from: string, context: Uint8Array): void {
  a.step(msg({ type: MessageType.HeartbeatResp, from, to: "a", term: 1, context }));
}
const reads = (a: RaftNode): string[] =>
  drain(a).flatMap((r) => r.readStates.map((s) => `${dec.decode(s.context)}@${s.index}`));

test("a read is confirmed by a quorum of heartbeat acks carrying its context, at the commit index of its arrival", (t) => {
  const a = leader();
  a.readIndex(ctx("r1"));
  const hbs = sent(a).filter((m) => m.type === MessageType.Heartbeat);
  t.deepEqual(hbs.map((m) => [m.to, dec.decode(m.context)]).sort(), [
    ["b", "r1"],
    ["c", "r1"],
  ]);
  a.propose(enc.encode("x")); // index 2, commit moves after the read arrived
  ack(a, "b", 2);
  drain(a);
  t.is(a.status().commit, 2);
  hbAck(a, "c", ctx("other"));
  t.deepEqual(reads(a), [], "an ack for another context confirms nothing");
  hbAck(a, "c", ctx("r1"));
  t.deepEqual(reads(a), ["r1@1"]);
  hbAck(a, "b", ctx("r1"));
  t.deepEqual(reads(a), [], "answered once");
});

test("an ack for a later read confirms every read before it, in order; an earlier ack confirms only its own", (t) => {
  const a = leader();
  for (const r of ["r1", "r2", "r3"]) a.readIndex(ctx(r));
  drain(a);
  hbAck(a, "b", ctx("r2"));
  t.deepEqual(reads(a), ["r1@1", "r2@1"]);
  hbAck(a, "b", ctx("r3"));
  t.deepEqual(reads(a), ["r3@1"]);
});

test("a read whose context is already pending is dropped, and costs no heartbeat round", (t) => {
  const a = leader();
  a.readIndex(ctx("same"));
  drain(a);
  a.readIndex(ctx("same"));
  t.deepEqual(sent(a), [], "a dropped read is not broadcast (a flood of them must not multiply heartbeats)");
  hbAck(a, "c", ctx("same"));
  t.deepEqual(reads(a), ["same@1"]);
});

test("heartbeats carry the newest pending read's context until it is confirmed", (t) => {
  const a = leader();
  a.readIndex(ctx("r1"));
  a.readIndex(ctx("r2"));
  drain(a);
  a.tick();
  const hb = sent(a).filter((m) => m.type === MessageType.Heartbeat);
  t.true(hb.length >= 2);
  t.true(hb.every((m) => dec.decode(m.context) === "r2"));
  hbAck(a, "b", ctx("r2"));
  drain(a);
  a.tick();
  t.true(
    sent(a)
      .filter((m) => m.type === MessageType.Heartbeat)
      .every((m) => m.context.length === 0),
  );
});

test("a learner's ack does not count toward a read's quorum", (t) => {
  const a = leader(["d"]);
  a.readIndex(ctx("r"));
  drain(a);
  hbAck(a, "d", ctx("r"));
  t.deepEqual(reads(a), []);
  hbAck(a, "c", ctx("r"));
  t.deepEqual(reads(a), ["r@1"]);
});

test("with five voters a read needs two follower acks besides the leader", (t) => {
  const a = loneLeader({ voters: ["a", "b", "c", "d", "e"] });
  ack(a, "b", 1);
  ack(a, "c", 1);
  drain(a);
  a.readIndex(ctx("r"));
  drain(a);
  hbAck(a, "b", ctx("r"));
  t.deepEqual(reads(a), []);
  hbAck(a, "b", ctx("r"));
  t.deepEqual(reads(a), [], "the same voter twice is one ack");
  hbAck(a, "e", ctx("r"));
  t.deepEqual(reads(a), ["r@1"]);
});

test("a single voter answers a read at once", (t) => {
  const a = loneLeader({ voters: ["a"] });
  drain(a);
  a.readIndex(ctx("solo"));
  t.deepEqual(reads(a), [`solo@${a.status().commit}`]);
});

test("a follower forwards a read to its leader and hands out the leader's answer", (t) => {
  const b = lone({ id: "b" });
  b.readIndex(ctx("nobody"));
  t.deepEqual(sent(b), [], "no leader known: dropped");
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
  drain(b);
  b.readIndex(ctx("rb"));
  const fwd = sent(b);
  t.deepEqual(
    fwd.map((m) => [m.type, m.to, dec.decode(m.context)]),
    [[MessageType.ReadIndex, "a", "rb"]],
  );
  b.step(msg({ type: MessageType.ReadIndexResp, from: "a", to: "b", term: 1, index: 7, context: ctx("rb") }));
  t.deepEqual(
    drain(b).flatMap((r) => r.readStates.map((s) => [s.index, dec.decode(s.context)])),
    [[7, "rb"]],
  );
});

test("a leader answers a forwarded read to the follower that asked, with the read index", (t) => {
  const a = leader();
  a.step(msg({ type: MessageType.ReadIndex, from: "c", to: "a", term: 1, context: ctx("rc") }));
  drain(a);
  hbAck(a, "b", ctx("rc"));
  const out: Message[] = drain(a).flatMap((r) => r.messages);
  const resp = out.filter((m) => m.type === MessageType.ReadIndexResp);
  t.deepEqual(
    resp.map((m) => [m.to, m.index, dec.decode(m.context)]),
    [["c", 1, "rc"]],
  );
  t.deepEqual(reads(a), [], "not a read of the leader's own");
});

test("a read forwarded to a follower goes on to its leader; a candidate drops it", (t) => {
  const b = lone({ id: "b" });
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
  drain(b);
  b.step(msg({ type: MessageType.ReadIndex, from: "c", to: "b", term: 1, context: ctx("x") }));
  t.deepEqual(
    sent(b).map((m) => [m.type, m.to]),
    [[MessageType.ReadIndex, "a"]],
  );
  const cand = lone({ id: "b" });
  for (let i = 0; i < 10; i++) cand.tick();
  drain(cand);
  cand.step(msg({ type: MessageType.ReadIndex, from: "c", to: "b", term: 1, context: ctx("x") }));
  t.deepEqual(sent(cand), []);
});

test("a fresh leader holds at most 1024 reads until its first commit, then serves them all in order", (t) => {
  const a = loneLeader();
  for (let i = 0; i < 1030; i++) a.readIndex(ctx(`r${i}`));
  t.deepEqual(reads(a), []);
  ack(a, "b", 1);
  drain(a);
  hbAck(a, "b", ctx("r1023"));
  const got = reads(a);
  t.is(got.length, 1024);
  t.is(got[0], "r0@1");
  t.is(got[1023], "r1023@1");
});

test("at most 4096 reads wait for acks at once; more are dropped", (t) => {
  const a = leader();
  for (let i = 0; i < 4096; i++) a.readIndex(ctx(`r${i}`));
  drain(a);
  for (let i = 4096; i < 4100; i++) a.readIndex(ctx(`r${i}`));
  t.deepEqual(sent(a), [], "dropped reads are not broadcast");
  hbAck(a, "b", ctx("r4096"));
  t.deepEqual(reads(a), [], "the 4097th was dropped: its ack confirms nothing");
  hbAck(a, "b", ctx("r4095"));
  t.is(reads(a).length, 4096);
});

test("a leader that steps down drops its pending reads", (t) => {
  const a = leader();
  a.readIndex(ctx("r"));
  drain(a);
  a.step(msg({ type: MessageType.Append, from: "b", to: "a", term: 2, index: 1, logTerm: 1 }));
  drain(a);
  t.is(a.status().role, "follower");
  t.deepEqual(reads(a), []);
});
