import test from "ava";
import { runSeed } from "./simulator.js";

test("replaying a seed gives the identical event trace", async (t) => {
  for (const [seed, profile] of [
    [7, "chaos"],
    [4242, "storage"],
  ] as const) {
    const a = await runSeed({ seed, profile, keepTrace: true });
    const b = await runSeed({ seed, profile, keepTrace: true });
    t.is(a.traceHash, b.traceHash);
    t.deepEqual(a.trace, b.trace);
    t.true(a.trace!.length > 100);
  }
});

test("different seeds give different traces", async (t) => {
  t.not((await runSeed({ seed: 1 })).traceHash, (await runSeed({ seed: 2 })).traceHash);
});
