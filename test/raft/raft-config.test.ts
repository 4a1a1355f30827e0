import test from "ava";
import { RaftError, RaftInvariantError, RaftNode, type RaftConfig } from "../../cluster/raft/core/index.js";
import { drain, entries, fixedRandom, lone, loneConfig, snapshotAt } from "./lone-node.js";

const persisted = () => ({
  hardState: { term: 0, vote: null, commit: 0 },
  snapshot: snapshotAt(0, 0, ["a", "b", "c"]),
  entries: [],
});

test("a config that cannot work is refused with BAD_ARGUMENT, field by field", (t) => {
  const bad: [string, Partial<RaftConfig>][] = [
    ["empty id", { id: "" }],
    ["id not a string", { id: 7 as never }],
    ...(
      ["electionTicks", "heartbeatTicks", "inflightMax", "batchEntriesMax", "batchBytesMax"] as const
    ).flatMap((f): [string, Partial<RaftConfig>][] => [
      [`${f} 0`, { [f]: 0, ...(f === "heartbeatTicks" ? {} : {}) }],
      [`${f} fractional`, { [f]: 1.5 }],
      [`${f} not a number`, { [f]: "4" as never }],
    ]),
    ["electionTicks below twice heartbeatTicks", { electionTicks: 9, heartbeatTicks: 5 }],
    ["no random", { random: undefined as never }],
    ["random without nextInt", { random: {} as never }],
  ];
  for (const [what, over] of bad) {
    const err = t.throws(() => new RaftNode(loneConfig("a", over), persisted()), undefined, what);
    t.true(err instanceof RaftError, what);
    t.is((err as RaftError).code, "BAD_ARGUMENT", what);
  }
});

test("each optional bound, when given, is checked too, and the error names it", (t) => {
  for (const f of [
    "inflightBytesMax",
    "uncommittedBytesMax",
    "snapshotTimeoutTicks",
    "promoteLagMax",
  ] as const) {
    for (const v of [-1, 1.5, "4" as never]) {
      const err = t.throws(
        () => new RaftNode(loneConfig("a", { [f]: v }), persisted()),
        undefined,
        `${f} ${v}`,
      );
      t.true(err instanceof RaftError, f);
      t.is((err as RaftError).code, "BAD_ARGUMENT", f);
      t.true(err!.message.includes(f), err!.message);
    }
  }
  for (const f of [
    "electionTicks",
    "heartbeatTicks",
    "inflightMax",
    "batchEntriesMax",
    "batchBytesMax",
  ] as const) {
    const err = t.throws(() => new RaftNode(loneConfig("a", { [f]: 0 }), persisted()));
    t.true(err!.message.includes(f), err!.message);
  }
});

test("a config at the lower edge of every bound works", (t) => {
  const cfg = loneConfig("a", {
    electionTicks: 2,
    heartbeatTicks: 1,
    inflightMax: 1,
    batchEntriesMax: 1,
    batchBytesMax: 1,
  });
  const n = new RaftNode(cfg, persisted());
  t.is(n.status().role, "follower");
  t.notThrows(() => new RaftNode(loneConfig("a", { electionTicks: 10, heartbeatTicks: 5 }), persisted()));
});

test("a follower campaigns after exactly electionTicks + the random draw, in [electionTicks, 2 * electionTicks)", (t) => {
  for (const draw of [0, 3, 9]) {
    const n = lone({ id: "a", config: { random: fixedRandom(draw) } });
    let ticks = 0;
    while (n.status().role === "follower" && ticks < 100) {
      n.tick();
      ticks++;
    }
    t.is(ticks, 10 + draw, `draw ${draw}`);
  }
});

test("a Random that answers out of range is a broken injection and throws an invariant error", (t) => {
  for (const v of [-1, 10, 2.5]) {
    t.throws(() => lone({ id: "a", config: { random: { nextInt: () => v } } }), {
      instanceOf: RaftInvariantError,
    });
  }
});

test("a learner never campaigns however long it hears nothing", (t) => {
  const d = lone({ id: "d", voters: ["a", "b", "c"], learners: ["d"] });
  for (let i = 0; i < 100; i++) d.tick();
  t.is(d.status().role, "follower");
  t.is(d.status().term, 0);
  t.false(d.hasReady());
});

test("a node whose config starts with a commit already applied hands out nothing again", (t) => {
  const n = new RaftNode(loneConfig("b", { applied: 3 }), {
    hardState: { term: 1, vote: null, commit: 3 },
    snapshot: snapshotAt(0, 0, ["a", "b", "c"]),
    entries: entries(1, 1, 1),
  });
  t.deepEqual(
    drain(n).flatMap((r) => r.committedEntries),
    [],
  );
  t.is(n.status().applied, 3);
});
