import test from "ava";
import { fenceQuorumRefusal } from "../../src/controlplane/fence-quorum.js";

const states =
  (fenced: string[]) =>
  (id: string): { state: "active" | "fenced" } =>
    fenced.includes(id) ? { state: "fenced" } : { state: "active" };

test("fencing a voter is held back only when the unfenced voters left would not make a quorum", (t) => {
  const voters = ["a", "b", "c"];
  t.is(fenceQuorumRefusal("c", voters, states([])), null, "2 of 3 left");
  t.regex(
    fenceQuorumRefusal("b", voters, states(["c"])) ?? "",
    /leave 1 of 3 voters unfenced, below the quorum of 2/,
  );
  t.is(fenceQuorumRefusal("learner", voters, states(["c"])), null, "a learner is never held back");
  const five = ["a", "b", "c", "d", "e"];
  t.is(fenceQuorumRefusal("e", five, states(["d"])), null, "3 of 5 left");
  t.not(fenceQuorumRefusal("c", five, states(["d", "e"])), null, "2 of 5 left");
  t.is(fenceQuorumRefusal("a", ["a"], states([])) !== null, true, "the only voter is never fenced");
});
