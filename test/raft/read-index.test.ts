import test from "ava";
import { Cluster, bytes, text } from "./raft-harness.js";

test("the leader answers ReadIndex with its commit index after a quorum of heartbeat acks", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.node("a").core.propose(bytes("x"));
  c.pump();
  c.node("a").core.readIndex(bytes("r1"));
  c.pump();
  const rs = c.node("a").readStates;
  t.is(rs.length, 1);
  t.is(text(rs[0]!.context), "r1");
  t.is(rs[0]!.index, c.node("a").core.status().commit);
});

test("a follower's ReadIndex is forwarded to the leader and answered", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.node("b").core.readIndex(bytes("rb"));
  c.pump();
  const rs = c.node("b").readStates;
  t.is(rs.length, 1);
  t.is(text(rs[0]!.context), "rb");
  t.is(rs[0]!.index, c.node("a").core.status().commit);
});

test("a leader cut off from the quorum never confirms a read", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.isolate("a");
  c.node("a").core.readIndex(bytes("stale?"));
  for (let i = 0; i < 5; i++) {
    c.node("a").core.tick();
    c.pump();
  }
  t.is(c.node("a").readStates.length, 0);
});

test("a fresh leader holds reads until it has committed an entry of its term", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  // Make the leader's own first-term entry unable to commit, then ask for a read.
  c.tickAll(1);
  c.isolate("a");
  for (let i = 0; i < 30; i++) {
    c.node("b").core.tick();
    c.pump();
  }
  t.is(c.node("b").core.status().role, "leader");
  c.isolate("b");
  c.node("b").core.readIndex(bytes("early"));
  c.pump();
  t.is(c.node("b").readStates.length, 0);
  c.heal();
  c.tickAll(2);
  t.is(c.node("b").readStates.length, 1);
  t.is(c.node("b").readStates[0]!.index, c.node("b").core.status().commit);
});

test("readIndex with an empty context is refused", (t) => {
  const c = new Cluster(["a"]);
  const err = t.throws(() => c.node("a").core.readIndex(new Uint8Array(0)));
  t.is((err as { code?: string }).code, "BAD_ARGUMENT");
});
