import test from "ava";
import { ConfChangeType, MessageType, RaftError } from "../../cluster/raft/core/index.js";
import { ack, drain, loneLeader, msg, sent } from "./lone-node.js";

const enc = new TextEncoder();

/** Leader a with entries 1..5 committed and applied. */
function leader() {
  const a = loneLeader();
  for (let i = 0; i < 4; i++) a.propose(enc.encode(`p${i}`)); // 2..5
  ack(a, "b", 5);
  drain(a);
  return a;
}

test("compact refuses an index at or below the current snapshot, beyond applied, or not an integer, and data that is not bytes", (t) => {
  const a = leader();
  a.compact(2, enc.encode("s2"));
  for (const [index, data] of [
    [2, enc.encode("again")],
    [1, enc.encode("older")],
    [6, enc.encode("beyond")],
    [3.5, enc.encode("half")],
    [Number.NaN, enc.encode("nan")],
    [3, "text"],
  ] as [number, Uint8Array][]) {
    const err = t.throws(() => a.compact(index, data), undefined, String(index));
    t.is((err as RaftError).code, "BAD_ARGUMENT", String(index));
  }
  t.is(a.status().firstIndex, 3, "nothing changed");
  t.notThrows(() => a.compact(5, enc.encode("s5")));
  t.is(a.status().firstIndex, 6);
});

test("a compaction snapshot carries the term and the configuration as of its index, not the latest", (t) => {
  const a = leader();
  const pos = a.proposeConfChange({
    type: ConfChangeType.AddLearner,
    nodeId: "d",
    context: new Uint8Array(0),
  });
  ack(a, "b", pos.index);
  drain(a);
  const before = a.compact(5, enc.encode("s5"));
  t.deepEqual(before.metadata, { index: 5, term: 1, confState: { voters: ["a", "b", "c"], learners: [] } });
  t.deepEqual(a.status().confState.learners, ["d"], "the log's change after 5 still holds");
  const after = a.compact(pos.index, enc.encode("s6"));
  t.deepEqual(after.metadata.confState, { voters: ["a", "b", "c"], learners: ["d"] });
  t.deepEqual(a.status().confState.learners, ["d"], "and from the snapshot once the entry is compacted");
  t.is(a.termAt(pos.index), 1);
  t.is(a.termAt(5), undefined);
});

test("after compaction the leader sends the latest snapshot to a follower that needs compacted entries", (t) => {
  const a = leader();
  a.compact(4, enc.encode("image-4"));
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  const snaps = sent(a).filter((m) => m.type === MessageType.Snapshot);
  t.is(snaps.length, 1);
  t.like(snaps[0], { to: "c", term: 1 });
  t.is(new TextDecoder().decode(snaps[0]!.snapshot!.data), "image-4");
  t.is(snaps[0]!.snapshot!.metadata.index, 4);
  t.is(a.status().progress.c!.state, "snapshot");
});

test("a replicating follower stays in replicate across election timeouts while it keeps answering", (t) => {
  const a = leader();
  ack(a, "c", 5);
  drain(a);
  for (let i = 0; i < 35; i++) {
    a.tick();
    drain(a);
    a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
    drain(a);
  }
  t.is(a.status().progress.c!.state, "replicate");
  t.is(a.status().progress.c!.next, 6);
  a.propose(enc.encode("more"));
  t.true(sent(a).some((m) => m.type === MessageType.Append && m.to === "c" && m.entries.length === 1));
});

test("a heartbeat answer from a follower that lacks entries makes the leader send them", (t) => {
  const a = leader();
  ack(a, "c", 3);
  drain(a);
  a.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  const out = sent(a).filter((m) => m.type === MessageType.Append && m.to === "c");
  t.true(out.length >= 1);
  const b = leader();
  ack(b, "c", 5);
  drain(b);
  b.step(msg({ type: MessageType.HeartbeatResp, from: "c", to: "a", term: 1 }));
  t.deepEqual(
    sent(b).filter((m) => m.type === MessageType.Append && m.to === "c"),
    [],
    "nothing to send to a follower that has everything",
  );
});
