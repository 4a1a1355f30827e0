import test from "ava";
import { MessageType, RaftError, type Message } from "../../cluster/raft/core/index.js";
import { Cluster } from "./raft-harness.js";

function heartbeat(over: Partial<Message>): Message {
  return {
    type: MessageType.Heartbeat,
    from: "b",
    to: "a",
    term: 1,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshot: null,
    context: new Uint8Array(0),
    ...over,
  };
}

test("malformed messages are refused as a value (kind malformed, naming the field), counted, and change nothing", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  const a = c.node("a").core;
  const before = JSON.stringify({ ...a.status(), refused: null });
  const bad: [unknown, RegExp][] = [
    [null, /^message: not an object/],
    ["hello", /^message: not an object/],
    [heartbeat({ type: 99 as never }), /^type: 99/],
    [heartbeat({ term: -1 }), /^term: /],
    [heartbeat({ term: 1.5 }), /^term: /],
    [heartbeat({ logTerm: Number.MAX_SAFE_INTEGER + 2 }), /^logTerm: /],
    [heartbeat({ from: "" }), /^from: /],
    [heartbeat({ to: "x".repeat(257) }), /^to: /],
    [heartbeat({ reject: 0 as never }), /^reject: /],
    [heartbeat({ context: "x" as never }), /^context: /],
    [
      heartbeat({ type: MessageType.Append, entries: [{ index: 0 }] as never }),
      /^entries\[0\]\.term: not a non-negative/,
    ],
    [heartbeat({ type: MessageType.Snapshot }), /^snapshot: missing/],
    [heartbeat({ entries: "nope" as never }), /^entries: not an array/],
  ];
  for (const [m, detail] of bad) {
    const r = a.step(m as Message);
    t.is(r?.kind, "malformed");
    t.regex(r!.detail, detail);
  }
  t.is(a.status().refused.malformed, bad.length);
  t.is(JSON.stringify({ ...a.status(), refused: null }), before);
  t.false(a.hasReady());
});

test("a message for another node or from the node itself is refused and changes nothing", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  const a = c.node("a").core;
  t.is(a.step(heartbeat({ to: "someone-else" }))?.kind, "wrongRecipient");
  t.is(a.step(heartbeat({ from: "a" }))?.kind, "fromSelf");
  t.like(a.status().refused, { wrongRecipient: 1, fromSelf: 1, malformed: 0 });
  t.is(a.status().leader, null);
  t.false(a.hasReady());
});

test("an accepted message returns null and is not counted", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  const a = c.node("a").core;
  t.is(a.step(heartbeat({})), null);
  t.is(a.status().leader, "b");
  t.true(Object.values(a.status().refused).every((n) => n === 0));
});

test("a config that cannot work is refused", (t) => {
  const err = t.throws(() => new Cluster(["a"], { electionTicks: 1, heartbeatTicks: 1 }));
  t.is((err as RaftError).code, "BAD_ARGUMENT");
});
