import test from "ava";
import { ConfChangeType, RaftError, type ConfChange } from "../../cluster/raft/core/index.js";
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

function refusal(fn: () => unknown): { code: string; reason: string | null } {
  try {
    fn();
  } catch (e) {
    if (e instanceof RaftError) return { code: e.code, reason: e.reason };
    throw e;
  }
  return { code: "none", reason: null };
}

test("invalid membership changes are refused with BAD_CONF_CHANGE and a reason code, and change nothing", (t) => {
  const c = threeWithLeader();
  const a = c.node("a").core;
  const before = JSON.stringify(a.status());
  const cases: [unknown, string][] = [
    [cc(ConfChangeType.AddLearner, "b"), "ALREADY_MEMBER"],
    [cc(ConfChangeType.PromoteLearner, "b"), "NOT_LEARNER"],
    [cc(ConfChangeType.PromoteLearner, "zz"), "NOT_LEARNER"],
    [cc(ConfChangeType.RemoveNode, "zz"), "NOT_MEMBER"],
    [{ ...cc(ConfChangeType.AddLearner, "d"), type: 9 }, "UNKNOWN_CHANGE_TYPE"],
    [cc(ConfChangeType.AddLearner, ""), "MALFORMED_CHANGE"],
    [cc(ConfChangeType.AddLearner, "x".repeat(257)), "MALFORMED_CHANGE"],
    [{ ...cc(ConfChangeType.AddLearner, "d"), context: "addr" }, "MALFORMED_CHANGE"],
    [null, "MALFORMED_CHANGE"],
  ];
  for (const [bad, reason] of cases) {
    t.deepEqual(
      refusal(() => a.proposeConfChange(bad as ConfChange)),
      { code: "BAD_CONF_CHANGE", reason },
    );
  }
  t.is(JSON.stringify(a.status()), before);
});

test("membership changes refused for the leader's state say why", (t) => {
  const one = new Cluster(["a"]);
  const solo = one.node("a");
  for (let i = 0; i < 40 && solo.core.status().role !== "leader"; i++) solo.core.tick();
  // Its noop is not persisted yet, so nothing of its term is committed.
  t.deepEqual(
    refusal(() => solo.core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"))),
    {
      code: "CONF_CHANGE_PENDING",
      reason: "TERM_UNCOMMITTED",
    },
  );
  one.pump();
  t.deepEqual(
    refusal(() => solo.core.proposeConfChange(cc(ConfChangeType.RemoveNode, "a"))),
    {
      code: "BAD_CONF_CHANGE",
      reason: "LAST_VOTER",
    },
  );

  const c = threeWithLeader();
  t.deepEqual(
    refusal(() => c.node("b").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"))),
    {
      code: "NOT_LEADER",
      reason: "NOT_LEADER",
    },
  );
  t.deepEqual(
    refusal(() => c.node("b").core.propose(bytes("x"))),
    { code: "NOT_LEADER", reason: "NOT_LEADER" },
  );
  c.isolate("a");
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  t.deepEqual(
    refusal(() => c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "e"))),
    {
      code: "CONF_CHANGE_PENDING",
      reason: "CHANGE_UNCOMMITTED",
    },
  );

  const t2 = threeWithLeader();
  t2.isolate("c");
  t2.node("a").core.propose(bytes("c lags"));
  t2.pump();
  t2.node("a").core.transferLeadership("c");
  t.deepEqual(
    refusal(() => t2.node("a").core.propose(bytes("y"))),
    {
      code: "PROPOSAL_DROPPED",
      reason: "TRANSFER_IN_PROGRESS",
    },
  );
  t.deepEqual(
    refusal(() => t2.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"))),
    {
      code: "PROPOSAL_DROPPED",
      reason: "TRANSFER_IN_PROGRESS",
    },
  );

  const t3 = threeWithLeader();
  t3.isolate("a");
  t3.node("a").core.proposeConfChange(cc(ConfChangeType.RemoveNode, "a"));
  t.deepEqual(
    refusal(() => t3.node("a").core.propose(bytes("y"))),
    {
      code: "PROPOSAL_DROPPED",
      reason: "LEADER_REMOVING_ITSELF",
    },
  );
});

test("other errors carry no refusal reason", (t) => {
  const c = threeWithLeader();
  const err = t.throws(() => c.node("a").core.propose("not bytes" as never));
  t.is((err as RaftError).code, "BAD_ARGUMENT");
  t.is((err as RaftError).reason, null);
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
