import test from "ava";
import { MessageType } from "../../cluster/raft/core/index.js";
import { Cluster, bytes } from "./raft-harness.js";

test("leadership transfer makes the target leader in the next term", (t) => {
  const c = new Cluster(["a", "b", "c"], { checkQuorum: true });
  c.campaign("a");
  c.node("a").core.propose(bytes("x"));
  c.pump();
  c.node("a").core.transferLeadership("c");
  c.pump();
  t.is(c.node("c").core.status().role, "leader");
  t.is(c.node("c").core.status().term, 2);
  t.is(c.node("a").core.status().role, "follower");
  t.true(c.delivered.some((m) => m.type === MessageType.TimeoutNow && m.to === "c"));
});

test("a lagging target is caught up before TimeoutNow", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.cut("a", "c");
  for (let i = 0; i < 5; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  c.heal();
  c.node("a").core.transferLeadership("c");
  t.throws(() => c.node("a").core.propose(bytes("during")), { any: true });
  c.pump();
  t.is(c.node("c").core.status().role, "leader");
  t.deepEqual(c.appliedData("c").slice(0, 5), ["p0", "p1", "p2", "p3", "p4"]);
});

test("transfer to a non-voter is refused", (t) => {
  const c = new Cluster(["a", "b"]);
  c.campaign("a");
  const err = t.throws(() => c.node("a").core.transferLeadership("zz"));
  t.is((err as { code?: string }).code, "BAD_ARGUMENT");
});
