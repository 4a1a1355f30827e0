import test from "ava";
import fc from "fast-check";
import { compareStamps, HybridClock, LOGICAL_MAX, type HlcStamp } from "../../cluster/replication/hlc.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";

/** A physical clock the test moves by hand. */
function manualClock(startMs: number): { now: () => number; set: (ms: number) => void } {
  let t = startMs;
  return { now: () => t, set: (ms) => (t = ms) };
}

test("stamps follow physical time when it moves forward", (t) => {
  const clock = manualClock(1000);
  const hlc = new HybridClock({ peer: "a", physicalNowMs: clock.now });
  t.deepEqual(hlc.now(), { wallMs: 1000, logical: 0, peer: "a" });
  clock.set(1005);
  t.deepEqual(hlc.now(), { wallMs: 1005, logical: 0, peer: "a" });
});

test("stamps keep increasing when physical time stalls or goes backwards", (t) => {
  const clock = manualClock(1000);
  const hlc = new HybridClock({ peer: "a", physicalNowMs: clock.now });
  const s1 = hlc.now();
  const s2 = hlc.now();
  clock.set(900);
  const s3 = hlc.now();
  t.true(compareStamps(s1, s2) < 0 && compareStamps(s2, s3) < 0);
  t.deepEqual(s3, { wallMs: 1000, logical: 2, peer: "a" });
});

test("a received stamp orders every later local stamp after it", (t) => {
  const a = new HybridClock({ peer: "a", physicalNowMs: () => 1000 });
  const b = new HybridClock({ peer: "b", physicalNowMs: () => 1000 });
  const fromA = [a.now(), a.now(), a.now()];
  b.observe(fromA[2]!);
  const next = b.now();
  t.true(compareStamps(fromA[2]!, next) < 0);
  t.deepEqual(next, { wallMs: 1000, logical: 4, peer: "b" });
});

test("a stamp from a clock ahead within the drift bound is adopted", (t) => {
  const hlc = new HybridClock({ peer: "b", physicalNowMs: () => 1000, maxDriftMs: 500 });
  const seen = hlc.observe({ wallMs: 1400, logical: 7, peer: "a" });
  t.deepEqual(seen, { wallMs: 1400, logical: 8, peer: "b" });
  t.deepEqual(hlc.now(), { wallMs: 1400, logical: 9, peer: "b" });
});

test("a stamp too far ahead is refused with CLOCK_DRIFT and changes nothing", (t) => {
  const hlc = new HybridClock({ peer: "b", physicalNowMs: () => 1000, maxDriftMs: 500 });
  const before = hlc.now();
  const err = t.throws(() => hlc.observe({ wallMs: 1501, logical: 0, peer: "a" }), {
    instanceOf: ReplicationError,
  });
  t.is(err?.code, "CLOCK_DRIFT");
  t.deepEqual(hlc.last(), before);
});

test("malformed remote stamps are refused with INVALID_RECORD", (t) => {
  const hlc = new HybridClock({ peer: "b", physicalNowMs: () => 1000 });
  for (const bad of [
    { wallMs: -1, logical: 0, peer: "a" },
    { wallMs: 1.5, logical: 0, peer: "a" },
    { wallMs: 1, logical: LOGICAL_MAX + 1, peer: "a" },
    { wallMs: 1, logical: 0, peer: "" },
    { wallMs: 1, logical: 0, peer: "x".repeat(129) },
    null,
  ]) {
    const err = t.throws(() => hlc.observe(bad as unknown as HlcStamp), { instanceOf: ReplicationError });
    t.is(err?.code, "INVALID_RECORD");
  }
});

test("the logical counter refuses to overflow", (t) => {
  const hlc = new HybridClock({
    peer: "a",
    physicalNowMs: () => 5,
    resumeFrom: { wallMs: 5, logical: LOGICAL_MAX, peer: "a" },
  });
  t.is(t.throws(() => hlc.now(), { instanceOf: ReplicationError })?.code, "CLOCK_OVERFLOW");
});

test("a clock resumed after a restart never issues a stamp behind the last one", (t) => {
  const hlc = new HybridClock({
    peer: "a",
    physicalNowMs: () => 10,
    resumeFrom: { wallMs: 500, logical: 3, peer: "a" },
  });
  t.deepEqual(hlc.now(), { wallMs: 500, logical: 4, peer: "a" });
});

test("stamps of distinct peers are never equal, and the order is total", (t) => {
  const stamp = fc.record({
    wallMs: fc.integer({ min: 0, max: 3 }),
    logical: fc.integer({ min: 0, max: 3 }),
    peer: fc.constantFrom("a", "b", "c"),
  });
  fc.assert(
    fc.property(stamp, stamp, stamp, (x, y, z) => {
      t.is(Math.sign(compareStamps(x, y)) + Math.sign(compareStamps(y, x)), 0, "antisymmetric");
      if (compareStamps(x, y) === 0) t.deepEqual(x, y);
      if (compareStamps(x, y) <= 0 && compareStamps(y, z) <= 0) t.true(compareStamps(x, z) <= 0);
    }),
    { numRuns: 300 },
  );
});

test("random exchanges between clocks keep every peer's stamps strictly increasing and causal", (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          peer: fc.integer({ min: 0, max: 2 }),
          from: fc.option(fc.integer({ min: 0, max: 2 })),
          advance: fc.integer({ min: -5, max: 5 }),
        }),
        {
          maxLength: 40,
        },
      ),
      (steps) => {
        const physical = [100, 100, 100];
        const clocks = physical.map(
          (_, i) =>
            new HybridClock({ peer: `p${i}`, physicalNowMs: () => physical[i]!, maxDriftMs: 1_000_000 }),
        );
        const last: (HlcStamp | undefined)[] = [undefined, undefined, undefined];
        for (const s of steps) {
          physical[s.peer] = Math.max(0, physical[s.peer]! + s.advance);
          let stamp: HlcStamp;
          if (s.from === null) stamp = clocks[s.peer]!.now();
          else {
            const sent = clocks[s.from]!.now();
            last[s.from] = sent;
            stamp = clocks[s.peer]!.observe(sent);
            t.true(compareStamps(sent, stamp) < 0, "receive is after send");
          }
          if (last[s.peer] !== undefined) t.true(compareStamps(last[s.peer]!, stamp) < 0, "monotonic");
          last[s.peer] = stamp;
        }
      },
    ),
    { numRuns: 200 },
  );
});
