import test from "ava";
import fc from "fast-check";
import { majority, PlaceQuorum, readQuorum, writeQuorum } from "../../cluster/replication/quorum.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";

test("W = R = floor(N/2) + 1, and W + R > N for every N", (t) => {
  const table: [number, number][] = [
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
  ];
  for (const [n, q] of table) {
    t.is(majority(n), q, `N=${n}`);
    t.true(2 * majority(n) > n);
  }
  for (const bad of [0, -1, 2.5, Number.NaN]) {
    t.is(t.throws(() => majority(bad), { instanceOf: ReplicationError })?.code, "INVALID_ARGUMENT");
  }
});

test("a write needs two distinct primaries out of three; repeats do not count", (t) => {
  const q = writeQuorum(["a", "b", "c"]);
  t.is(q.answer("a"), "counted");
  t.is(q.answer("a"), "duplicate");
  t.false(q.reached);
  t.is(q.answer("b"), "counted");
  t.true(q.reached);
  t.deepEqual(q.missing(), ["c"]);
});

test("answers from peers outside the partition never count", (t) => {
  const q = writeQuorum(["a", "b", "c"]);
  t.is(q.answer("x"), "unknown-peer");
  t.is(q.answer("y", "z"), "unknown-peer", "standing for a peer that is no primary");
  t.is(q.count, 0);
});

test("a handoff counts in place of the down primary it holds the copy for, once", (t) => {
  const q = writeQuorum(["a", "b", "c"]);
  t.is(q.answer("a"), "counted");
  t.is(q.answer("h1", "b"), "counted");
  t.true(q.reached);
  t.is(q.answer("b"), "duplicate", "the primary returning fills no second place");
  t.deepEqual(q.peers().sort(), ["a", "h1"]);
});

test("one handoff cannot fill two places, and a primary cannot stand in for another", (t) => {
  const q = writeQuorum(["a", "b", "c"]);
  t.is(q.answer("h1", "b"), "counted");
  t.is(q.answer("h1", "c"), "refused");
  t.is(q.answer("h1", "b"), "duplicate");
  t.is(q.answer("a", "c"), "refused");
  t.is(q.count, 1);
  t.false(q.reached);
});

test("reads use the same places: R answers always overlap the W that acknowledged a write", (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 7 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (n, writeOrder, readOrder) => {
        const primaries = Array.from({ length: n }, (_, i) => `p${i}`);
        const w = writeQuorum(primaries);
        for (const i of writeOrder) if (!w.reached) w.answer(primaries[i % n]!);
        const r = readQuorum(primaries);
        for (const i of readOrder) if (!r.reached) r.answer(primaries[i % n]!);
        if (w.reached && r.reached) {
          const writers = new Set(w.peers());
          t.true(
            r.peers().some((p) => writers.has(p)),
            "read and write quorums intersect",
          );
        }
        t.true(w.count <= n && r.count <= n);
      },
    ),
    { numRuns: 300 },
  );
});

test("impossible quorums are refused", (t) => {
  const code = (f: () => unknown): string | undefined => t.throws(f, { instanceOf: ReplicationError })?.code;
  t.is(
    code(() => new PlaceQuorum(["a", "a", "b"])),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PlaceQuorum([])),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PlaceQuorum(["a", "b"], 3)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PlaceQuorum(["a", ""], 1)),
    "INVALID_ARGUMENT",
  );
});
