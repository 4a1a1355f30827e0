import test from "ava";
import { applyMutant, findMutants } from "./mutants.js";

const src = `
export function f(a: number, b: number, s: "x" | "y"): number {
  assert(a >= 0, \`a is \${a}\`);
  if (a < b && s === "x") return Math.min(a + 1, b);
  if (!ok(a)) throw new RaftError("BAD_ARGUMENT", "not ok");
  let n = 0;
  n += a;
  n++;
  return n;
}
`;

const show = (file: string, text: string) =>
  findMutants(file, text).map((m) => `${m.mutator} ${m.original} -> ${m.replacement}`);

test("each mutator makes the edits Stryker would, once each", (t) => {
  const got = show("f.ts", src);
  for (const want of [
    "EqualityOperator < -> <=",
    "EqualityOperator < -> >=",
    "EqualityOperator === -> !==",
    "LogicalOperator && -> ||",
    'ConditionalExpression a < b && s === "x" -> true',
    'ConditionalExpression a < b && s === "x" -> false',
    "ConditionalExpression a < b -> false",
    "ArithmeticOperator + -> -",
    "MethodExpression min -> max",
    "BooleanLiteral !ok(a) -> ok(a)",
    "AssignmentOperator += -> -=",
    "UpdateOperator n++ -> n--",
    'StringLiteral "x" -> ""',
    'StringLiteral "BAD_ARGUMENT" -> ""',
    "EqualityOperator >= -> >",
  ]) {
    t.true(got.includes(want), want);
  }
  t.is(new Set(got).size, got.length, "no duplicates");
});

test("types, error messages and assert messages are not mutated; assert conditions are, and tagged", (t) => {
  const ms = findMutants("f.ts", src);
  t.false(
    ms.some((m) => m.mutator === "StringLiteral" && m.original.includes("not ok")),
    "error message",
  );
  t.false(
    ms.some((m) => m.line === 3 && m.inAssert === null),
    "assert message",
  );
  t.false(
    ms.some((m) => m.original === '"y"'),
    "type",
  );
  const inAssert = ms.filter((m) => m.inAssert !== null);
  t.true(inAssert.length > 0);
  t.true(inAssert.every((m) => m.inAssert === "`a is ${a}`" && m.line === 3));
  t.true(ms.every((m) => m.scope === "f"));
});

test("a mutant applied gives the source with exactly that edit", (t) => {
  const m = findMutants("f.ts", src).find((x) => x.mutator === "MethodExpression")!;
  const out = applyMutant(src, m);
  t.true(out.includes("Math.max(a + 1, b)"));
  t.is(out.length, src.length);
  t.is(m.line, 4);
});
