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

test("malformed messages are refused with BAD_ARGUMENT and change nothing", (t) => {
  const c = new Cluster(["a", "b", "c"]);
  const a = c.node("a").core;
  const before = JSON.stringify(a.status());
  const bad: unknown[] = [
    null,
    "hello",
    heartbeat({ type: 99 as never }),
    heartbeat({ term: -1 }),
    heartbeat({ term: 1.5 }),
    heartbeat({ from: "" }),
    heartbeat({ to: "someone-else" }),
    heartbeat({ from: "a" }),
    heartbeat({ context: "x" as never }),
    heartbeat({ type: MessageType.Append, entries: [{ index: 0 }] as never }),
    heartbeat({ type: MessageType.Snapshot }),
    heartbeat({ entries: "nope" as never }),
  ];
  for (const m of bad) {
    const err = t.throws(() => a.step(m as Message));
    t.true(err instanceof RaftError);
    t.is((err as RaftError).code, "BAD_ARGUMENT");
  }
  t.is(JSON.stringify(a.status()), before);
  t.false(a.hasReady());
});

test("a config that cannot work is refused", (t) => {
  const err = t.throws(() => new Cluster(["a"], { electionTicks: 1, heartbeatTicks: 1 }));
  t.is((err as RaftError).code, "BAD_ARGUMENT");
});
