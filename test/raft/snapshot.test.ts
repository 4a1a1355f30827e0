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

/** Leader a with c cut off behind a compacted log; c healed but every Snapshot to it dropped. */
function snapshotLost(config: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const c = new Cluster(["a", "b", "c"], config);
  c.campaign("a");
  c.isolate("c");
  for (let i = 0; i < 10; i++) c.node("a").core.propose(bytes(`p${i}`));
  c.pump();
  const a = c.node("a");
  a.disk.persistCompaction(a.core.compact(a.core.status().applied, bytes("image")));
  c.heal();
  c.filter = (m) => m.type !== MessageType.Snapshot;
  c.node("a").core.tick();
  c.pump();
  if (a.core.status().progress.c!.state !== "snapshot") throw new Error("c is not waiting for a snapshot");
  return c;
}

const snapshotsSent = (c: Cluster): number =>
  c
    .node("a")
    .readies.flatMap((r) => r.messages)
    .filter((m) => m.type === MessageType.Snapshot).length;

test("a lost snapshot is sent again after snapshotTimeoutTicks, not before", (t) => {
  const c = snapshotLost({ snapshotTimeoutTicks: 25 });
  const a = c.node("a").core;
  t.is(snapshotsSent(c), 1);
  for (let i = 0; i < 24; i++) {
    a.tick();
    c.pump();
  }
  t.is(a.status().progress.c!.state, "snapshot", "still waiting after 24 ticks");
  t.is(snapshotsSent(c), 1);
  a.tick();
  c.pump();
  t.is(snapshotsSent(c), 2, "sent again at tick 25");
});

test("snapshotTimeoutTicks defaults to electionTicks", (t) => {
  const c = snapshotLost({ electionTicks: 12 });
  const a = c.node("a").core;
  for (let i = 0; i < 11; i++) {
    a.tick();
    c.pump();
  }
  t.is(snapshotsSent(c), 1);
  a.tick();
  c.pump();
  t.is(snapshotsSent(c), 2);
  t.is(
    (t.throws(() => new Cluster(["a"], { snapshotTimeoutTicks: 0 })) as { code?: string }).code,
    "BAD_ARGUMENT",
  );
});

test("reportSnapshot failed: the follower is probed from its last match once a heartbeat is answered", (t) => {
  const c = snapshotLost({ snapshotTimeoutTicks: 1000 });
  const a = c.node("a").core;
  const match = a.status().progress.c!.match;
  a.reportSnapshot("c", "failed");
  t.like(a.status().progress.c!, { state: "probe", next: match + 1 });
  t.false(a.hasReady(), "nothing is sent before the next heartbeat answer");
  a.propose(bytes("new"));
  c.pump();
  t.is(snapshotsSent(c), 1, "not even with new entries");
  a.tick();
  c.pump();
  t.is(snapshotsSent(c), 2, "the probe found the follower behind the log again: a new snapshot");
});

test("reportSnapshot delivered: the follower is probed from just after the snapshot", (t) => {
  const c = snapshotLost({ snapshotTimeoutTicks: 1000 });
  const a = c.node("a").core;
  const snapIndex = a.status().firstIndex - 1;
  a.reportSnapshot("c", "delivered");
  t.like(a.status().progress.c!, { state: "probe", next: snapIndex + 1 });
  t.false(a.hasReady());
});

test("the driver hands the transport's snapshot reports to the core: the leader probes again at once", (t) => {
  const c = snapshotLost({ snapshotTimeoutTicks: 1000 });
  const a = c.node("a").core;
  const snapIndex = a.status().firstIndex - 1;
  c.reportSnapshotSent("a", "c", "delivered");
  t.is(a.status().progress.c!.state, "snapshot", "taken on the driver's next round, not inside the callback");
  c.pump();
  t.like(a.status().progress.c!, { state: "probe", next: snapIndex + 1 });
  a.tick(); // the heartbeat's answer lets the probe go; c holds no snapshot (it was filtered): a new one
  c.pump();
  t.is(snapshotsSent(c), 2);
});

test("reportSnapshot is ignored for a follower not waiting for a snapshot, an unknown node, or on a non-leader", (t) => {
  const c = snapshotLost({ snapshotTimeoutTicks: 1000 });
  const a = c.node("a").core;
  const before = JSON.stringify(a.status());
  a.reportSnapshot("b", "failed");
  a.reportSnapshot("zz", "failed");
  t.is(JSON.stringify(a.status()), before);
  c.node("b").core.reportSnapshot("c", "failed");
  t.is(c.node("b").core.status().role, "follower");
  t.false(c.node("b").core.hasReady());
});
