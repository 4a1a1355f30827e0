import test from "ava";
import { ConfChangeType, type ConfChange } from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { Cluster, bytes } from "./raft-harness.js";

const cc = (type: ConfChange["type"], nodeId: string): ConfChange => ({
  type,
  nodeId,
  context: bytes(`addr-${nodeId}`),
});

function threeWithLeader(): Cluster {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.node("a").core.propose(bytes("x"));
  c.pump();
  return c;
}

test("a learner catches up, does not vote or count, and is promoted to voter", (t) => {
  const c = threeWithLeader();
  c.add("d", new SimDisk(null));
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  c.pump();
  c.tickAll(2);
  t.deepEqual(c.node("a").core.status().confState, { voters: ["a", "b", "c"], learners: ["d"] });
  t.deepEqual(c.appliedData("d"), ["x"]);
  // Only voters count: with b and c cut off, a and learner d cannot commit.
  c.isolate("b");
  c.isolate("c");
  const pos = c.node("a").core.propose(bytes("needs-quorum"));
  c.pump();
  t.true(c.node("a").core.status().commit < pos.index);
  c.heal();
  c.tickAll(2);
  c.node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"));
  c.pump();
  t.deepEqual(c.node("d").core.status().confState, { voters: ["a", "b", "c", "d"], learners: [] });
});

test("one membership change at a time: a second is refused until the first commits", (t) => {
  const c = threeWithLeader();
  c.isolate("a");
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  const err = t.throws(() => c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "e")));
  t.is((err as { code?: string }).code, "CONF_CHANGE_PENDING");
});

test("invalid membership changes are refused with BAD_CONF_CHANGE and change nothing", (t) => {
  const c = threeWithLeader();
  const a = c.node("a").core;
  const before = a.status();
  for (const bad of [
    cc(ConfChangeType.AddLearner, "b"),
    cc(ConfChangeType.PromoteLearner, "b"),
    cc(ConfChangeType.RemoveNode, "zz"),
  ]) {
    const err = t.throws(() => a.proposeConfChange(bad));
    t.is((err as { code?: string }).code, "BAD_CONF_CHANGE");
  }
  t.is(a.status().lastIndex, before.lastIndex);
});

test("removing the leader: it steps down once the change commits and the others elect a leader", (t) => {
  const c = threeWithLeader();
  c.node("a").core.proposeConfChange(cc(ConfChangeType.RemoveNode, "a"));
  c.pump();
  t.is(c.node("a").core.status().role, "follower");
  t.deepEqual(c.node("b").core.status().confState.voters, ["b", "c"]);
  c.nodes.delete("a");
  c.tickAll(40);
  const leader = c.leader();
  t.truthy(leader);
  t.not(leader!.id, "a");
  leader!.core.propose(bytes("after-removal"));
  c.pump();
  t.true(c.appliedData("b").includes("after-removal"));
  t.true(c.appliedData("c").includes("after-removal"));
});

test("a configuration change takes effect on append and is reverted if the entry is truncated", (t) => {
  const c = threeWithLeader();
  c.isolate("a");
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  t.deepEqual(c.node("a").core.status().confState.learners, ["d"], "in effect as soon as appended");
  // b becomes leader without the change; when a rejoins its uncommitted entry is replaced.
  for (let i = 0; i < 40 && c.node("b").core.status().role !== "leader"; i++) {
    c.node("b").core.tick();
    c.pump();
  }
  c.node("b").core.propose(bytes("y"));
  c.pump();
  c.heal();
  c.tickAll(3);
  t.deepEqual(c.node("a").core.status().confState, { voters: ["a", "b", "c"], learners: [] });
});
