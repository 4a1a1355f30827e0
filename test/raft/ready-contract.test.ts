import test from "ava";
import { MessageType, RaftError, RaftInvariantError } from "../../cluster/raft/core/index.js";
import { ack, drain, entries, entry, lone, loneLeader, msg, snapshotAt } from "./lone-node.js";

const enc = new TextEncoder();

test("a node with nothing to say has no Ready", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1), term: 1, commit: 0 });
  t.false(b.hasReady());
  t.is(b.ready(), null);
});

test("ready() twice without advance(), or advance() without ready(), is refused with BAD_STATE", (t) => {
  const a = loneLeader({ voters: ["a"] });
  a.propose(enc.encode("x"));
  const rd = a.ready()!;
  t.false(a.hasReady(), "nothing more is handed out while a Ready is being handled");
  t.is((t.throws(() => a.ready()) as RaftError).code, "BAD_STATE");
  a.advance(rd);
  t.is((t.throws(() => a.advance(rd)) as RaftError).code, "BAD_STATE");
});

test("a single voter counts its own entry only once the driver has persisted it", (t) => {
  const a = loneLeader({ voters: ["a"] });
  const pos = a.propose(enc.encode("x"));
  const rd = a.ready()!;
  t.deepEqual(
    rd.entries.map((e) => e.index),
    [pos.index],
  );
  t.true(rd.mustSync);
  t.deepEqual(rd.committedEntries, [], "not committed before it is durable");
  t.true(a.status().commit < pos.index);
  a.advance(rd);
  t.is(a.status().commit, pos.index);
  const next = a.ready()!;
  t.is(next.hardState?.commit, pos.index);
  t.deepEqual(
    next.committedEntries.map((e) => e.index),
    [pos.index],
  );
  t.deepEqual(next.entries, []);
  a.advance(next);
  t.is(a.status().applied, pos.index);
  t.false(a.hasReady());
});

test("a Ready with only messages needs no sync, and soft and hard state appear only when they change", (t) => {
  const a = loneLeader();
  ack(a, "b", 1);
  drain(a);
  a.tick(); // heartbeats only
  const rd = a.ready()!;
  t.true(rd.messages.length > 0);
  t.true(rd.messages.every((m) => m.type === MessageType.Heartbeat));
  t.false(rd.mustSync);
  t.is(rd.hardState, null);
  t.is(rd.softState, null);
  t.is(rd.snapshot, null);
  t.deepEqual(rd.entries, []);
  a.advance(rd);
});

test("becoming leader is announced once in softState; the term and vote in hardState", (t) => {
  const a = lone({ id: "a" });
  for (let i = 0; i < 10; i++) a.tick();
  const rd1 = a.ready()!;
  t.deepEqual(rd1.softState, { leader: null, role: "candidate" });
  t.deepEqual(rd1.hardState, { term: 1, vote: "a", commit: 0 });
  t.true(rd1.mustSync);
  t.deepEqual(
    rd1.messages.map((m) => [m.type, m.to, m.term]),
    [
      [MessageType.Vote, "b", 1],
      [MessageType.Vote, "c", 1],
    ],
  );
  a.advance(rd1);
  a.step(msg({ type: MessageType.VoteResp, from: "b", to: "a", term: 1 }));
  const rd2 = a.ready()!;
  t.deepEqual(rd2.softState, { leader: "a", role: "leader" });
  t.is(rd2.hardState, null, "term and vote did not change");
  a.advance(rd2);
  a.tick();
  t.is(a.ready()!.softState, null);
});

test("a snapshot from the leader is handed out to persist, then applied and the log starts after it", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1), term: 1, commit: 1 });
  drain(b);
  const snap = snapshotAt(7, 2, ["a", "b", "c"]);
  b.step(msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 2, snapshot: snap }));
  const rd = b.ready()!;
  t.is(rd.snapshot, snap);
  t.true(rd.mustSync);
  t.deepEqual(rd.entries, []);
  t.like(rd.messages[0], { type: MessageType.AppendResp, to: "a", index: 7, reject: false });
  b.advance(rd);
  const st = b.status();
  t.is(st.applied, 7);
  t.is(st.commit, 7);
  t.is(st.firstIndex, 8);
  t.is(st.lastIndex, 7);
  t.false(b.hasReady(), "nothing is left to hand out: the snapshot counts as persisted");
});

test("a snapshot the follower already holds the end of only moves its commit; an old one is acked with commit", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1, 2, 2), term: 2, commit: 1 });
  drain(b);
  b.step(
    msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 2, snapshot: snapshotAt(3, 2, ["a", "b"]) }),
  );
  const rd = drain(b);
  t.true(
    rd.every((r) => r.snapshot === null),
    "no restore: the log already has (3, 2)",
  );
  t.is(b.status().commit, 3);
  t.is(b.status().lastIndex, 4);
  t.like(rd.flatMap((r) => r.messages)[0], { type: MessageType.AppendResp, index: 3 });
  b.step(
    msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 2, snapshot: snapshotAt(2, 1, ["a", "b"]) }),
  );
  const old = drain(b);
  t.true(old.every((r) => r.snapshot === null));
  t.like(old.flatMap((r) => r.messages)[0], { type: MessageType.AppendResp, index: 3, reject: false });
});

test("advance() with committed entries beyond the commit index is a broken driver and throws", (t) => {
  const b = lone({ id: "b", entries: entries(1, 1), term: 1, commit: 1 });
  const rd = b.ready()!;
  t.throws(() => b.advance({ ...rd, committedEntries: [entry(1, 1), entry(2, 1)] }), {
    instanceOf: RaftInvariantError,
  });
});

test("entries truncated between ready() and advance() are not marked durable by that advance", (t) => {
  const b = lone({ id: "b", entries: entries(1), term: 1, commit: 1 });
  drain(b);
  b.step(
    msg({
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: 1,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 1)],
    }),
  );
  const rd = b.ready()!; // hands out 2t1
  // Before the driver finishes, a new leader overwrites entry 2.
  b.step(
    msg({
      type: MessageType.Append,
      from: "c",
      to: "b",
      term: 2,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 2)],
    }),
  );
  b.advance(rd);
  const again = drain(b);
  t.deepEqual(
    again.flatMap((r) => r.entries.map((e) => `${e.index}t${e.term}`)),
    ["2t2"],
    "the overwritten entry is handed out again",
  );
});

test("a newer snapshot stepped while the driver handles an older one is handed out next", (t) => {
  const b = lone({ id: "b", entries: entries(1), term: 1, commit: 1 });
  drain(b);
  const s5 = snapshotAt(5, 1, ["a", "b", "c"]);
  const s9 = snapshotAt(9, 1, ["a", "b", "c"]);
  b.step(msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 1, snapshot: s5 }));
  const rd = b.ready()!;
  t.is(rd.snapshot, s5);
  b.step(msg({ type: MessageType.Snapshot, from: "a", to: "b", term: 1, snapshot: s9 }));
  b.advance(rd);
  const next = b.ready()!;
  t.is(next.snapshot, s9);
  b.advance(next);
  t.is(b.status().applied, 9);
  t.false(b.hasReady());
});

test("a follower that learns who leads is told in softState, though its role and term stay the same", (t) => {
  const b = lone({ id: "b", entries: entries(1), term: 1, commit: 0 });
  drain(b);
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
  const rd = b.ready()!;
  t.deepEqual(rd.softState, { leader: "a", role: "follower" });
  t.is(rd.hardState, null, "term and vote did not change");
  b.advance(rd);
  b.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: 1 }));
  t.is(b.ready()!.softState, null, "the same leader again is no change");
});
