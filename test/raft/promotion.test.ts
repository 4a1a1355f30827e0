import test from "ava";
import {
  ConfChangeType,
  DEFAULT_PROMOTE_LAG_MAX,
  RaftError,
  type ConfChange,
} from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { Cluster, bytes } from "./raft-harness.js";

const cc = (type: ConfChange["type"], nodeId: string): ConfChange => ({ type, nodeId, context: bytes("") });

function refusal(fn: () => unknown): { code: string; reason: string | null } {
  try {
    fn();
  } catch (e) {
    if (e instanceof RaftError) return { code: e.code, reason: e.reason };
    throw e;
  }
  return { code: "none", reason: null };
}

/** Voters a, b, c (a leads) and learner d, caught up; then d is cut off and the leader appends `lag` more. */
function learnerBehindBy(lag: number, promoteLagMax?: number): Cluster {
  const c = new Cluster(["a", "b", "c"], promoteLagMax === undefined ? {} : { promoteLagMax });
  c.campaign("a");
  c.add("d", new SimDisk(null));
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  c.tickAll(2);
  c.isolate("d");
  for (let i = 0; i < lag; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const s = c.node("a").core.status();
  if (s.lastIndex - s.progress.d!.match !== lag) throw new Error(`learner is not ${lag} behind`);
  return c;
}

test("promotion: a caught-up learner is promoted", (t) => {
  const c = learnerBehindBy(0, 3);
  const pos = c.node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"));
  t.true(pos.index > 0);
  t.deepEqual(c.node("a").core.status().confState.voters, ["a", "b", "c", "d"]);
});

test("promotion: a learner exactly promoteLagMax entries behind is promoted", (t) => {
  const c = learnerBehindBy(3, 3);
  c.node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"));
  t.deepEqual(c.node("a").core.status().confState.learners, []);
});

test("promotion: a learner more than promoteLagMax entries behind is refused (LEARNER_BEHIND), and nothing changes", (t) => {
  const c = learnerBehindBy(4, 3);
  const a = c.node("a").core;
  const before = JSON.stringify(a.status());
  t.deepEqual(
    refusal(() => a.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"))),
    {
      code: "BAD_CONF_CHANGE",
      reason: "LEARNER_BEHIND",
    },
  );
  t.is(JSON.stringify(a.status()), before);
  // Once it catches up, the same promotion goes through.
  c.heal();
  c.tickAll(2);
  a.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"));
  t.deepEqual(a.status().confState.voters, ["a", "b", "c", "d"]);
});

test("promotion: a learner that never acknowledged anything is refused even within the lag bound", (t) => {
  const c = new Cluster(["a", "b", "c"], { promoteLagMax: 100 });
  c.campaign("a");
  // d is in the configuration but no node d exists: its match stays 0.
  c.node("a").core.proposeConfChange(cc(ConfChangeType.AddLearner, "d"));
  c.tickAll(2);
  const s = c.node("a").core.status();
  t.is(s.progress.d!.match, 0);
  t.true(s.lastIndex <= 100);
  t.deepEqual(
    refusal(() => c.node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d"))),
    {
      code: "BAD_CONF_CHANGE",
      reason: "LEARNER_BEHIND",
    },
  );
});

test("promotion: promoteLagMax 0 demands the whole log", (t) => {
  t.is(
    refusal(() =>
      learnerBehindBy(1, 0).node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d")),
    ).reason,
    "LEARNER_BEHIND",
  );
  t.is(
    refusal(() =>
      learnerBehindBy(0, 0).node("a").core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d")),
    ).code,
    "none",
  );
});

test("promotion default: DEFAULT_PROMOTE_LAG_MAX entries behind is the most allowed", (t) => {
  t.is(
    refusal(() =>
      learnerBehindBy(DEFAULT_PROMOTE_LAG_MAX + 1)
        .node("a")
        .core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d")),
    ).reason,
    "LEARNER_BEHIND",
  );
  t.is(
    refusal(() =>
      learnerBehindBy(DEFAULT_PROMOTE_LAG_MAX)
        .node("a")
        .core.proposeConfChange(cc(ConfChangeType.PromoteLearner, "d")),
    ).code,
    "none",
  );
});

test("promoteLagMax in the config must be an integer >= 0", (t) => {
  for (const bad of [-1, 1.5, Number.NaN]) {
    t.is(refusal(() => new Cluster(["a"], { promoteLagMax: bad })).code, "BAD_ARGUMENT", String(bad));
  }
});
