import test from "ava";
import { runSeed } from "./simulator.js";

test("replaying a seed gives the identical event trace", (t) => {
  for (const seed of [7, 4242]) {
    const a = runSeed({ seed, profile: "chaos", keepTrace: true });
    const b = runSeed({ seed, profile: "chaos", keepTrace: true });
    t.is(a.traceHash, b.traceHash);
    t.deepEqual(a.trace, b.trace);
    t.true(a.trace!.length > 100);
  }
});

test("different seeds give different traces", (t) => {
  t.not(runSeed({ seed: 1 }).traceHash, runSeed({ seed: 2 }).traceHash);
});
