import test from "ava";
import { MessageType, RaftInvariantError, RaftNode } from "../../cluster/raft/core/index.js";
import { drain, entries, entry, lone, loneConfig, msg, sent, snapshotAt } from "./lone-node.js";

const voters = ["a", "b", "c"];

function start(persisted: Partial<ConstructorParameters<typeof RaftNode>[1]>, applied?: number): RaftNode {
  return new RaftNode(loneConfig("b", applied === undefined ? {} : { applied }), {
    hardState: { term: 3, vote: null, commit: 0 },
    snapshot: snapshotAt(0, 0, voters),
    entries: [],
    ...persisted,
  });
}

test("a persisted log that is not contiguous, starts away from the snapshot, or whose terms decrease is refused at start", (t) => {
  const bad = [
    { entries: [entry(1, 1), entry(3, 1)] },
    { entries: [entry(2, 1), entry(3, 1)] },
    { snapshot: snapshotAt(4, 2, voters), entries: [entry(6, 2)] },
    { entries: [entry(1, 2), entry(2, 1)] },
    { snapshot: snapshotAt(4, 2, voters), entries: [entry(5, 1)] },
    { entries: entries(1, 1), hardState: { term: 3, vote: null, commit: 3 } },
  ];
  for (const p of bad)
    t.throws(() => start(p), { instanceOf: RaftInvariantError }, JSON.stringify(p.entries));
  // The same shapes, valid, start fine: equal terms, a first entry of the snapshot's term, commit at the end.
  t.notThrows(() =>
    start({ entries: [entry(1, 1), entry(2, 1)], hardState: { term: 3, vote: null, commit: 2 } }),
  );
  t.notThrows(() => start({ snapshot: snapshotAt(4, 2, voters), entries: [entry(5, 2), entry(6, 3)] }));
});

test("an applied index beyond the persisted commit is refused; below the snapshot it starts at the snapshot", (t) => {
  t.throws(() => start({ entries: entries(1, 1, 1), hardState: { term: 3, vote: null, commit: 2 } }, 3), {
    instanceOf: RaftInvariantError,
  });
  const n = start({ snapshot: snapshotAt(4, 2, voters), entries: [entry(5, 2)] }, 1);
  t.is(n.status().applied, 4);
  t.is(n.status().commit, 4, "a commit below the snapshot starts at the snapshot");
});

test("committed entries after the configured applied index are handed out again at start, and only those", (t) => {
  const n = start({ entries: entries(1, 1, 1, 1, 1), hardState: { term: 3, vote: null, commit: 4 } }, 2);
  const rds = drain(n);
  t.deepEqual(
    rds.flatMap((r) => r.committedEntries.map((e) => e.index)),
    [3, 4],
  );
  t.is(n.status().applied, 4);
  const fresh = start({ entries: entries(1, 1, 1), hardState: { term: 3, vote: null, commit: 3 } });
  t.deepEqual(
    drain(fresh).flatMap((r) => r.committedEntries.map((e) => e.index)),
    [1, 2, 3],
    "with no applied index configured: everything after the snapshot",
  );
});

test("status and termAt describe the log: first and last index, terms, nothing outside", (t) => {
  const n = start({ snapshot: snapshotAt(4, 2, voters), entries: [entry(5, 2), entry(6, 3)] });
  const st = n.status();
  t.is(st.firstIndex, 5);
  t.is(st.lastIndex, 6);
  t.is(n.termAt(4), 2, "the snapshot's index has the snapshot's term");
  t.is(n.termAt(5), 2);
  t.is(n.termAt(6), 3);
  t.is(n.termAt(3), undefined, "compacted");
  t.is(n.termAt(7), undefined, "beyond the end");
});

/** Follower b at term 2 with log [1t1 2t1 3t2], commit 1. */
function follower(): RaftNode {
  const b = lone({ id: "b", entries: entries(1, 1, 2), term: 2, commit: 1 });
  drain(b);
  return b;
}
const append = (over: Parameters<typeof msg>[0] extends infer M ? Partial<M> : never) =>
  msg({ type: MessageType.Append, from: "a", to: "b", term: 2, ...over });

test("an append that matches is acked with its last index, and commit follows the leader's but never past it", (t) => {
  const b = follower();
  b.step(append({ index: 3, logTerm: 2, entries: [entry(4, 2), entry(5, 2)], commit: 4 }));
  const rds = drain(b);
  t.deepEqual(
    rds.flatMap((r) => r.entries.map((e) => e.index)),
    [4, 5],
    "only the new entries are handed out to persist",
  );
  const acks = rds.flatMap((r) => r.messages);
  t.is(acks.length, 1);
  t.like(acks[0], { type: MessageType.AppendResp, to: "a", term: 2, index: 5, reject: false });
  t.is(b.status().commit, 4);
  t.deepEqual(
    rds.flatMap((r) => r.committedEntries.map((e) => e.index)),
    [2, 3, 4],
  );
});

test("the leader's commit is capped at the last entry the append proved, not the follower's last index", (t) => {
  const b = follower();
  // Matches up to 2 only: entry 3 of b may still differ from the leader's 3.
  b.step(append({ index: 1, logTerm: 1, entries: [entry(2, 1)], commit: 10 }));
  const out = sent(b);
  t.is(out[0]!.index, 2);
  t.is(b.status().commit, 2);
  t.is(b.status().lastIndex, 3, "entries already present are not truncated");
});

test("an append that conflicts truncates from the first differing entry and hands out only the new suffix", (t) => {
  const b = follower();
  b.step(
    append({ term: 3, index: 1, logTerm: 1, entries: [entry(2, 1), entry(3, 3), entry(4, 3)], commit: 1 }),
  );
  const rds = drain(b);
  t.deepEqual(
    rds.flatMap((r) => r.entries.map((e) => `${e.index}t${e.term}`)),
    ["3t3", "4t3"],
  );
  t.is(b.termAt(3), 3);
  t.is(b.status().lastIndex, 4);
});

test("a repeated append changes nothing and is acked again", (t) => {
  const b = follower();
  const m = append({ index: 3, logTerm: 2, entries: [entry(4, 2)], commit: 1 });
  b.step(m);
  drain(b);
  b.step(m);
  const rds = drain(b);
  t.deepEqual(
    rds.flatMap((r) => r.entries),
    [],
  );
  t.is(rds.flatMap((r) => r.messages)[0]!.index, 4);
  t.is(b.status().lastIndex, 4);
});

test("an append below the follower's commit is answered with the commit index, not a rejection", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1, 2), term: 2, commit: 3 });
  drain(b);
  b.step(append({ index: 1, logTerm: 2, entries: [], commit: 0 }));
  const out = sent(b);
  t.like(out[0], { type: MessageType.AppendResp, index: 3, reject: false });
});

test("a mismatching append is rejected with a hint: the last index whose term is <= the leader's logTerm", (t) => {
  const cases: [number, number, number, number][] = [
    // prevIndex, prevTerm, hint index, hint term
    [5, 2, 3, 2], // beyond b's log: hint from b's last index
    [3, 3, 3, 2], // b's entry 3 has term 2 <= 3
    [3, 1, 2, 1], // b's entry 3 has term 2 > 1: skip back to the last term-1 entry
  ];
  for (const [index, logTerm, hint, hintTerm] of cases) {
    const b = follower();
    b.step(append({ term: 3, index, logTerm }));
    const out = sent(b);
    t.like(
      out[0],
      { type: MessageType.AppendResp, index, reject: true, rejectHint: hint, rejectHintTerm: hintTerm },
      `prev (${index}, ${logTerm})`,
    );
  }
});

test("a rejection hint stops at the snapshot, with the snapshot's term", (t) => {
  const b = lone({ id: "b", snapIndex: 2, snapTerm: 1, entries: [entry(3, 3), entry(4, 3)], term: 3 });
  drain(b);
  b.step(append({ term: 4, index: 4, logTerm: 2 }));
  t.like(sent(b)[0], { reject: true, rejectHint: 2, rejectHintTerm: 1 });
});

test("entries in one append are bounded by batchBytesMax, but one entry larger than it still goes", (t) => {
  const leader = (): RaftNode => {
    const a = lone({ id: "a", voters: ["a", "b"], config: { batchBytesMax: 20 } });
    for (let i = 0; i < 10 && a.status().role === "follower"; i++) a.tick();
    a.step(msg({ type: MessageType.VoteResp, from: "b", to: "a", term: 1 }));
    drain(a);
    return a;
  };
  const appendsToB = (a: RaftNode): number[][] =>
    sent(a)
      .filter((m) => m.type === MessageType.Append && m.to === "b")
      .map((m) => m.entries.map((e) => e.index));
  // b's first probe is outstanding; four entries wait: 1 (empty), 2, 3, 4 (10 bytes each).
  const a = leader();
  for (let i = 0; i < 3; i++) a.propose(new Uint8Array(10));
  drain(a);
  a.step(msg({ type: MessageType.HeartbeatResp, from: "b", to: "a", term: 1 }));
  t.deepEqual(appendsToB(a), [[1, 2, 3]], "0 + 10 + 10 <= 20 < 30");
  const big = leader();
  big.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 1 }));
  drain(big);
  big.propose(new Uint8Array(40));
  t.deepEqual(appendsToB(big), [[2]]);
});

test("a snapshot that does not match a longer log replaces all of it", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1, 1, 1, 1), term: 1, commit: 1 });
  drain(b);
  const snap = snapshotAt(3, 2, ["a", "b", "c"]);
  b.step(msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 2, snapshot: snap }));
  const rds = drain(b);
  t.is(rds[0]!.snapshot, snap);
  t.deepEqual(
    rds.flatMap((r) => r.entries),
    [],
  );
  const st = b.status();
  t.is(st.lastIndex, 3);
  t.is(st.firstIndex, 4);
  t.is(st.commit, 3);
  t.is(b.termAt(3), 2);
  t.is(b.termAt(4), undefined);
  // The log goes on from the snapshot.
  b.step(
    msg({
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: 2,
      index: 3,
      logTerm: 2,
      entries: [entry(4, 2)],
    }),
  );
  t.deepEqual(
    drain(b).flatMap((r) => r.entries.map((e) => e.index)),
    [4],
  );
});

test("a rejection hint never goes below the snapshot, even when the snapshot's term is above the leader's", (t) => {
  const b = lone({ id: "b", snapIndex: 2, snapTerm: 3, entries: [entry(3, 3), entry(4, 3)], term: 3 });
  drain(b);
  b.step(append({ term: 4, index: 4, logTerm: 1 }));
  t.like(sent(b)[0], { reject: true, rejectHint: 2, rejectHintTerm: 3 });
});

test("a node that joins with no snapshot starts with an empty log and an empty configuration, and never campaigns", (t) => {
  const n = new RaftNode(loneConfig("d"), {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
  });
  const st = n.status();
  t.deepEqual(st.confState, { voters: [], learners: [] });
  t.is(st.firstIndex, 1);
  t.is(st.lastIndex, 0);
  t.is(n.termAt(0), 0);
  for (let i = 0; i < 50; i++) n.tick();
  t.is(n.status().role, "follower");
  t.false(n.hasReady());
});
