import test from "ava";
import { MessageType } from "../../cluster/raft/core/index.js";
import { Cluster, bytes } from "./raft-harness.js";

test("compact discards applied entries and a restart resumes from the snapshot", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  for (let i = 0; i < 10; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const a = c.node("a");
  const applied = a.core.status().applied;
  const snap = a.core.compact(applied, bytes("state-at-" + applied));
  a.disk.persistCompaction(snap);
  t.is(snap.metadata.index, applied);
  t.is(snap.metadata.term, 1);
  t.deepEqual(snap.metadata.confState.voters, ["a", "b", "c"]);
  t.is(a.core.status().firstIndex, applied + 1);
  t.is(a.core.termAt(applied - 1), undefined);
  const r = c.restart("a");
  t.is(r.core.status().firstIndex, applied + 1);
  t.is(r.core.status().applied, applied);
});

test("compact refuses an index beyond applied and changes nothing", (t) => {
  const c = new Cluster(["a"]);
  c.campaign("a");
  const st = c.node("a").core.status();
  const err = t.throws(() => c.node("a").core.compact(st.applied + 5, bytes("x")));
  t.is((err as { code?: string }).code, "BAD_ARGUMENT");
  t.is(c.node("a").core.status().firstIndex, st.firstIndex);
});

test("a follower behind the leader's compacted log is sent InstallSnapshot and catches up", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  c.campaign("a");
  c.isolate("c");
  for (let i = 0; i < 10; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const a = c.node("a");
  a.disk.persistCompaction(a.core.compact(a.core.status().applied, bytes("image")));
  c.heal();
  c.tickAll(3);
  const snaps = c.delivered.filter((m) => m.type === MessageType.Snapshot && m.to === "c");
  t.is(snaps.length, 1);
  const cNode = c.node("c");
  t.truthy(
    cNode.readies.find((r) => r.snapshot !== null),
    "the snapshot is handed to the driver",
  );
  t.is(cNode.disk.snapshot?.metadata.index, a.core.status().firstIndex - 1);
  t.is(cNode.core.status().commit, a.core.status().commit);
  // New entries after the snapshot replicate normally.
  a.core.propose(bytes("after"));
  c.pump();
  t.deepEqual(c.appliedData("c"), ["after"]);
});
