import test from "ava";
import { MessageType } from "../../cluster/raft/core/index.js";
import { ack, appendsTo, drain, entries, loneLeader, msg, sent } from "./lone-node.js";

const enc = new TextEncoder();

/** A leader of term 1 over a, b, c whose log is [1: empty entry of term 1]. */
function leader(over: Parameters<typeof loneLeader>[0] = {}) {
  return loneLeader(over);
}

test("a new leader probes each follower from its last index, nothing in flight", (t) => {
  const a = leader();
  const st = a.status();
  t.is(st.lastIndex, 1);
  for (const id of ["b", "c"]) {
    t.like(st.progress[id], { match: 0, next: 1, state: "probe", inflight: 0, recentActive: true });
  }
  t.deepEqual(Object.keys(st.progress).sort(), ["b", "c"], "no progress for itself");
});

test("probe: one append at a time until the follower answers; a heartbeat answer lets the next one go", (t) => {
  const a = leader();
  a.propose(enc.encode("x"));
  t.is(appendsTo(sent(a), "b").length, 0, "b's probe is outstanding: nothing more is sent");
  a.step(msg({ type: MessageType.HeartbeatResp, from: "b", to: "a", term: 1 }));
  const again = appendsTo(sent(a), "b");
  t.is(again.length, 1);
  t.is(again[0]!.index, 0, "the probe restarts from next - 1");
  t.deepEqual(
    again[0]!.entries.map((e) => e.index),
    [1, 2],
  );
});

test("an ack moves a probed follower to replicate with match and next set from it", (t) => {
  const a = leader();
  ack(a, "b", 1);
  drain(a);
  const pr = a.status().progress.b!;
  t.is(pr.state, "replicate");
  t.is(pr.match, 1);
  t.is(pr.next, 2);
});

test("replicate: appends are pipelined up to inflightMax, and each ack frees the window up to its index", (t) => {
  const a = leader({ config: { inflightMax: 2 } });
  ack(a, "b", 1);
  drain(a);
  for (let i = 0; i < 4; i++) a.propose(enc.encode(`p${i}`)); // indexes 2..5
  const first = appendsTo(sent(a), "b");
  t.deepEqual(
    first.map((m) => m.entries.map((e) => e.index)),
    [[2], [3]],
    "two appends in flight, then the window is full",
  );
  t.is(a.status().progress.b!.inflight, 2);
  t.is(a.status().progress.b!.next, 4, "next advances optimistically on send");
  ack(a, "b", 2);
  const more = appendsTo(sent(a), "b");
  t.deepEqual(
    more.map((m) => m.entries.map((e) => e.index)),
    [[4, 5]],
    "one slot freed: the rest goes in one append",
  );
  t.is(a.status().progress.b!.inflight, 2);
  ack(a, "b", 5);
  drain(a);
  t.is(a.status().progress.b!.inflight, 0);
  t.is(a.status().progress.b!.match, 5);
});

test("a heartbeat answer from a follower with a full window frees one slot (a lost ack cannot stall it)", (t) => {
  const a = leader({ config: { inflightMax: 1 } });
  ack(a, "b", 1);
  drain(a);
  a.propose(enc.encode("p")); // 2
  a.propose(enc.encode("q")); // 3
  t.deepEqual(
    appendsTo(sent(a), "b").map((m) => m.entries.map((e) => e.index)),
    [[2]],
  );
  a.step(msg({ type: MessageType.HeartbeatResp, from: "b", to: "a", term: 1 }));
  const after = appendsTo(sent(a), "b");
  t.is(after.length, 1);
  t.deepEqual(
    after[0]!.entries.map((e) => e.index),
    [3],
  );
});

test("a rejection in replicate falls back to probe from match + 1", (t) => {
  const a = leader();
  ack(a, "b", 1);
  drain(a);
  for (let i = 0; i < 3; i++) a.propose(enc.encode(`p${i}`)); // 2..4
  drain(a);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 3, reject: true, rejectHint: 1 }),
  );
  const pr = a.status().progress.b!;
  t.is(pr.state, "probe");
  t.is(pr.next, 2);
  t.is(pr.inflight, 0);
  const probe = appendsTo(sent(a), "b");
  t.is(probe.length, 1);
  t.is(probe[0]!.index, 1);
});

test("a stale rejection (at or below match) in replicate is ignored", (t) => {
  const a = leader();
  a.propose(enc.encode("p")); // 2
  ack(a, "b", 2);
  drain(a);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 2, reject: true, rejectHint: 0 }),
  );
  t.is(a.status().progress.b!.state, "replicate");
  t.is(a.status().progress.b!.next, 3);
  t.is(appendsTo(sent(a), "b").length, 0);
});

test("a probe rejection moves next to min(rejected, hint + 1); one about another index is stale", (t) => {
  // Leader of term 2 over a log of nine term-1 entries: it probes b and c from 10.
  const a = leader({ entries: entries(1, 1, 1, 1, 1, 1, 1, 1, 1), term: 1 });
  t.is(a.status().progress.b!.next, 10);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 2, index: 9, reject: true, rejectHint: 4 }),
  );
  t.is(a.status().progress.b!.next, 5);
  const probe = appendsTo(sent(a), "b");
  t.is(probe.length, 1);
  t.is(probe[0]!.index, 4);
  t.is(probe[0]!.logTerm, 1);
  // The old rejection again (a duplicate): it is not about next - 1 any more.
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 2, index: 9, reject: true, rejectHint: 2 }),
  );
  t.is(a.status().progress.b!.next, 5);
  t.is(appendsTo(sent(a), "b").length, 0);
  // A hint above the rejected index cannot move next up.
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 2, index: 4, reject: true, rejectHint: 8 }),
  );
  t.is(a.status().progress.b!.next, 4);
});

test("a rejection's hint term lets the leader skip the follower's whole older term", (t) => {
  const a = leader({ entries: entries(1, 1, 1, 2, 2, 2, 3, 3, 3), term: 3 });
  t.is(a.status().term, 4);
  // b holds term-2 entries up to 9: the leader's last entry of a term <= 2 is 6, so it probes after 6.
  a.step(
    msg({
      type: MessageType.AppendResp,
      from: "b",
      to: "a",
      term: 4,
      index: 9,
      reject: true,
      rejectHint: 9,
      rejectHintTerm: 2,
    }),
  );
  t.is(a.status().progress.b!.next, 7);
  const probe = appendsTo(sent(a), "b");
  t.is(probe[0]!.index, 6);
  t.is(probe[0]!.logTerm, 2);
});

test("a probe never goes below match + 1", (t) => {
  const a = leader();
  a.propose(enc.encode("p")); // 2
  a.propose(enc.encode("q")); // 3
  ack(a, "b", 2);
  drain(a);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 3, reject: true, rejectHint: 0 }),
  );
  t.is(a.status().progress.b!.state, "probe");
  t.is(a.status().progress.b!.next, 3);
  drain(a);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 2, reject: true, rejectHint: 0 }),
  );
  t.is(a.status().progress.b!.next, 3, "hint 0 is below match 2: next stays at match + 1");
  t.is(a.status().progress.b!.match, 2);
});

/** Leader a with entries 1..5 committed and compacted into a snapshot at 5; c never answered. */
function compactedLeader() {
  const a = leader();
  for (let i = 0; i < 4; i++) a.propose(enc.encode(`p${i}`)); // 2..5
  ack(a, "b", 5);
  drain(a);
  t0(a.status().commit === 5 && a.status().applied === 5, "entries 1..5 committed and applied");
  a.compact(5, enc.encode("image"));
  return a;
}

function t0(cond: boolean, what: string): void {
  if (!cond) throw new Error(`setup: ${what}`);
}

test("snapshot state: a follower behind the compacted log gets the snapshot and nothing more until it lands", (t) => {
  const a = compactedLeader();
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  const out = sent(a).filter((m) => m.to === "c");
  const snaps = out.filter((m) => m.type === MessageType.Snapshot);
  t.is(snaps.length, 1);
  t.is(snaps[0]!.snapshot!.metadata.index, 5);
  t.is(a.status().progress.c!.state, "snapshot");
  a.propose(enc.encode("later"));
  t.is(
    sent(a).filter((m) => m.to === "c" && (m.type === MessageType.Append || m.type === MessageType.Snapshot))
      .length,
    0,
    "paused while the snapshot is in flight",
  );
});

test("snapshot state: once the follower acks the snapshot index it replicates from there", (t) => {
  const a = compactedLeader();
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  drain(a);
  ack(a, "c", 5);
  const pr = a.status().progress.c!;
  t.is(pr.state, "replicate");
  t.is(pr.match, 5);
  t.is(pr.next, 6);
});

test("snapshot state: after an election timeout without an ack the leader probes right after the snapshot", (t) => {
  const a = compactedLeader();
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  drain(a);
  for (let i = 0; i < 9; i++) a.tick();
  drain(a);
  t.is(a.status().progress.c!.state, "snapshot", "still waiting before electionTicks");
  a.tick();
  drain(a);
  const pr = a.status().progress.c!;
  t.is(pr.state, "probe");
  t.is(pr.next, 6, "max(match + 1, snapshot index + 1)");
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  const probe = sent(a).filter((m) => m.to === "c" && m.type === MessageType.Append);
  t.is(probe.length, 1);
  t.is(probe[0]!.index, 5);
  t.is(probe[0]!.logTerm, 1);
});

test("a late duplicate ack does not move a probed follower back to replicate", (t) => {
  const a = leader();
  a.propose(enc.encode("p")); // 2
  ack(a, "b", 2);
  drain(a);
  a.propose(enc.encode("q")); // 3
  drain(a);
  a.step(
    msg({ type: MessageType.AppendResp, from: "b", to: "a", term: 1, index: 3, reject: true, rejectHint: 2 }),
  );
  drain(a);
  t.is(a.status().progress.b!.state, "probe");
  ack(a, "b", 2); // the old ack again
  t.is(a.status().progress.b!.state, "probe");
  t.is(a.status().progress.b!.match, 2);
  t.deepEqual(appendsTo(sent(a), "b"), [], "its probe is still outstanding");
});

test("by default the in-flight byte window lets appends of a few KiB pipeline", (t) => {
  const a = leader();
  ack(a, "b", 1);
  drain(a);
  for (let i = 0; i < 4; i++) a.propose(new Uint8Array(4096));
  t.is(appendsTo(sent(a), "b").length, 4);
  t.is(a.status().progress.b!.inflight, 4);
});

test("snapshot state: an ack below the snapshot index raises match and next but keeps waiting for the snapshot", (t) => {
  const a = compactedLeader();
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  drain(a);
  ack(a, "c", 3);
  t.like(a.status().progress.c, { state: "snapshot", match: 3, next: 4 });
});
