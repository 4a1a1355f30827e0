import test from "ava";
import { EntryType, MessageType, type Entry } from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { bootstrapSnapshot } from "../../cluster/raft/core/index.js";
import { Cluster, bytes } from "./raft-harness.js";

function entry(index: number, term: number, data = `e${index}t${term}`): Entry {
  return { index, term, type: EntryType.Normal, data: bytes(data), confChange: null, confState: null };
}

function diskWith(voters: string[], term: number, entries: Entry[], commit: number): SimDisk {
  const d = new SimDisk(bootstrapSnapshot(voters));
  d.hardState = { term, vote: null, commit };
  d.entries = entries;
  return d;
}

test("proposals commit and apply in the same order on every node", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  for (let i = 0; i < 20; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const want = Array.from({ length: 20 }, (_, i) => `p${i}`);
  for (const id of ["a", "b", "c"]) t.deepEqual(c.appliedData(id), want, id);
});

test("a proposal on a follower is refused with NOT_LEADER", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  const err = t.throws(() => c.node("b").core.propose(bytes("x")));
  t.is((err as { code?: string }).code, "NOT_LEADER");
});

test("an entry is not committed before a quorum has persisted it", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.isolate("a");
  const pos = c.node("a").core.propose(bytes("lonely"));
  c.pump();
  t.true(c.node("a").core.status().commit < pos.index);
  c.heal();
  c.tickAll(2);
  t.true(c.node("a").core.status().commit >= pos.index);
});

test("appends respect batchEntriesMax and the in-flight window inflightMax", (t) => {
  const c = new Cluster(["a", "b"], { batchEntriesMax: 3, inflightMax: 2 });
  c.campaign("a");
  c.tickAll(1); // b moves to replicate state
  // b stops answering: a may pipeline at most inflightMax appends of at most batchEntriesMax entries.
  c.filter = (m) => m.from !== "b";
  const before = c.delivered.length;
  for (let i = 0; i < 20; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const appends = c.delivered
    .slice(before)
    .filter((m) => m.type === MessageType.Append && m.entries.length > 0);
  t.is(appends.length, 2);
  t.true(appends.every((m) => m.entries.length <= 3));
  c.filter = null;
  c.tickAll(3);
  t.is(c.appliedData("b").length, 20);
});

test("a follower with a long divergent tail is repaired with few rejections (fast backtracking)", (t) => {
  const voters = ["a", "b", "c"];
  const common = [entry(1, 1), entry(2, 1)];
  const c = new Cluster(voters);
  // Leader-to-be "a": term 5 log. "b" holds 30 stale entries of terms 2-3 that must be truncated.
  const stale = Array.from({ length: 30 }, (_, i) => entry(3 + i, i < 15 ? 2 : 3));
  c.nodes.clear();
  c.add("a", diskWith(voters, 5, [...common, entry(3, 4), entry(4, 5)], 2));
  c.add("b", diskWith(voters, 3, [...common, ...stale], 2));
  c.add("c", diskWith(voters, 5, [...common, entry(3, 4), entry(4, 5)], 2));
  c.campaign("a");
  t.is(c.node("a").core.status().role, "leader");
  c.tickAll(3);
  const rejects = c.delivered.filter((m) => m.type === MessageType.AppendResp && m.from === "b" && m.reject);
  t.true(rejects.length <= 3, `${rejects.length} rejections`);
  const a = c.node("a").core;
  const b = c.node("b").core;
  t.is(b.status().lastIndex, a.status().lastIndex);
  for (let i = 1; i <= a.status().lastIndex; i++) t.is(b.termAt(i), a.termAt(i), `index ${i}`);
});

/**
 * Raft paper figure 8 with three nodes: "a" led term 2 and appended index 2; "b" led term 3 and appended
 * a different index 2; "c" has neither. "a" wins term 4 with c's vote and replicates its term-2 entry to c,
 * but the term-4 entry after it does not reach c.
 */
function figure8(bugs: { commitOldTermEntries?: boolean }): Cluster {
  const voters = ["a", "b", "c"];
  const c = new Cluster(voters, { batchEntriesMax: 1, bugs });
  c.nodes.clear();
  c.add("a", diskWith(voters, 3, [entry(1, 1), entry(2, 2, "from-term-2")], 1));
  c.add("b", diskWith(voters, 3, [entry(1, 1), entry(2, 3, "from-term-3")], 1));
  c.add("c", diskWith(voters, 3, [entry(1, 1)], 1));
  c.isolate("b");
  // Once c holds the term-2 entry, drop the appends that would bring it the term-4 entry.
  c.filter = (m) =>
    !(
      m.type === MessageType.Append &&
      m.entries.some((e) => e.index === 3) &&
      c.node("c").core.termAt(2) === 2
    );
  c.campaign("a");
  return c;
}

test("figure 8: a leader does not commit an old-term entry by counting replicas", (t) => {
  const c = figure8({});
  const a = c.node("a").core.status();
  t.is(a.role, "leader");
  t.is(a.term, 4);
  t.is(c.node("c").core.termAt(2), 2, "the term-2 entry reached c");
  t.is(a.commit, 1, "not committed: no term-4 entry on a quorum");
  // a dies; b returns and wins with c's vote, overwriting index 2: that is allowed, it was never committed.
  c.nodes.delete("a");
  c.filter = null;
  c.heal();
  c.elect("b");
  t.is(c.node("b").core.status().role, "leader");
  t.deepEqual(c.appliedData("c").slice(0, 2), ["e1t1", "from-term-3"]);
});

test("figure 8 with the commitOldTermEntries bug: the committed entry is later overwritten", (t) => {
  const c = figure8({ commitOldTermEntries: true });
  t.is(c.node("a").core.status().commit, 2, "the broken leader commits the term-2 entry");
  t.deepEqual(c.appliedData("a"), ["e1t1", "from-term-2"]);
  c.nodes.delete("a");
  c.filter = null;
  c.heal();
  c.elect("b");
  // Another node applies a different entry at index 2: state machine safety is violated.
  t.deepEqual(c.appliedData("c").slice(0, 2), ["e1t1", "from-term-3"]);
});

test("a crash loses what a node received but never persisted; it converges after restart", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.node("a").core.propose(bytes("kept"));
  c.pump();
  const lastBefore = c.node("b").core.status().lastIndex;
  c.isolate("b");
  c.node("a").core.propose(bytes("later"));
  // b steps the append (it is in b's memory) but crashes before handling its Ready.
  const msgs = c.drainOne(c.node("a"));
  for (const m of msgs) if (m.to === "b") c.node("b").core.step(m);
  t.is(c.node("b").core.status().lastIndex, lastBefore + 1);
  const b = c.restart("b");
  t.is(b.core.status().lastIndex, lastBefore, "the unpersisted entry is gone");
  for (const m of msgs) if (m.to === "c") c.node("c").core.step(m);
  c.pump();
  c.heal();
  c.tickAll(3);
  t.deepEqual(c.appliedData("b"), ["kept", "later"]);
});
