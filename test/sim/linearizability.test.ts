import test from "ava";
import { checkRegisterHistory, type RegisterOp } from "./linearizability.js";

const w = (key: string, value: string, invokedAt: number, respondedAt: number): RegisterOp => ({
  kind: "write",
  key,
  value,
  invokedAt,
  respondedAt,
});
const r = (key: string, value: string | null, invokedAt: number, respondedAt: number): RegisterOp => ({
  kind: "read",
  key,
  value,
  invokedAt,
  respondedAt,
});

test("a sequential history that reads the latest write is linearizable", (t) => {
  t.deepEqual(checkRegisterHistory([r("a", null, 0, 1), w("a", "v1", 2, 3), r("a", "v1", 4, 5)]), {
    outcome: "ok",
  });
});

test("a read older than an acknowledged write is a violation", (t) => {
  const res = checkRegisterHistory([w("a", "v1", 1, 2), w("a", "v2", 3, 4), r("a", "v1", 5, 6)]);
  t.is(res.outcome, "violation");
});

test("a read may not go back to an older value after a newer one was read", (t) => {
  const res = checkRegisterHistory([w("a", "v1", 1, 10), r("a", "v1", 2, 3), r("a", null, 4, 5)]);
  t.is(res.outcome, "violation");
});

test("concurrent operations may take effect in either order", (t) => {
  const ops = [w("a", "v1", 1, 10), w("a", "v2", 2, 9), r("a", "v2", 3, 4), r("a", "v1", 5, 6)];
  t.is(checkRegisterHistory(ops).outcome, "ok");
});

test("a write with an unknown outcome may have taken effect", (t) => {
  t.is(checkRegisterHistory([w("a", "v1", 1, Infinity), r("a", "v1", 2, 3)]).outcome, "ok");
  t.is(checkRegisterHistory([w("a", "v1", 1, Infinity), r("a", null, 2, 3)]).outcome, "ok");
});

test("keys are checked independently and the violating key is named", (t) => {
  const res = checkRegisterHistory([
    w("a", "x", 1, 2),
    r("a", "x", 3, 4),
    w("b", "y", 1, 2),
    r("b", null, 3, 4),
  ]);
  t.is(res.outcome, "violation");
  t.is(res.outcome === "violation" ? res.key : "", "b");
});

test("the search is bounded and says unknown past its step limit", (t) => {
  const ops: RegisterOp[] = [];
  for (let i = 0; i < 12; i++) ops.push(w("a", `v${i}`, 0, 100));
  ops.push(r("a", "nope", 101, 102));
  t.deepEqual(checkRegisterHistory(ops, 50), { outcome: "unknown", key: "a" });
});
