import test from "ava";
import {
  ConfChangeType,
  EntryType,
  MessageType,
  type Message,
  type RaftNode,
} from "../../cluster/raft/core/index.js";
import { NODE_ID_CHARS_MAX } from "../../cluster/node-id.js";
import { drain, entry, lone, msg, stepOutcome } from "./lone-node.js";

/**
 * Every field of a message from the network is checked for the shape the core relies on; one bad field
 * refuses the whole message and changes nothing. Each case below differs from a valid message in one field.
 */
const valid = (): Message =>
  msg({ type: MessageType.Heartbeat, from: "b", to: "a", term: 1, commit: 0, context: new Uint8Array([1]) });
const validAppend = (over: Record<string, unknown>[] = []): Message =>
  msg({
    type: MessageType.Append,
    from: "b",
    to: "a",
    term: 1,
    entries: over.map((o, i) => ({ ...entry(i + 1, 1), ...o }) as never),
  });
const ccEntry = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: EntryType.ConfChange,
  confChange: { type: ConfChangeType.AddLearner, nodeId: "d", context: new Uint8Array(0) },
  confState: { voters: ["a", "b", "c"], learners: ["d"] },
  ...over,
});
const snap = (over: Record<string, unknown> = {}, md: Record<string, unknown> = {}): Message =>
  msg({
    type: MessageType.Snapshot,
    from: "b",
    to: "a",
    term: 1,
    snapshot: {
      data: new Uint8Array(0),
      metadata: { index: 1, term: 1, confState: { voters: ["a", "b"], learners: [] }, ...md },
      ...over,
    } as never,
  });
const long = (n: number): string => "x".repeat(n);

const malformed: [string, unknown][] = [
  ["null", null],
  ["a number", 7],
  ["type 0", { ...valid(), type: 0 }],
  ["type 13", { ...valid(), type: 13 }],
  ["type as a string", { ...valid(), type: "7" }],
  ["from empty", { ...valid(), from: "" }],
  ["from not a string", { ...valid(), from: 5 }],
  ["from one char too long", { ...valid(), from: long(NODE_ID_CHARS_MAX + 1) }],
  ["from with a control character", { ...valid(), from: "b\n" }],
  ["to empty", { ...valid(), to: "" }],
  ["to one char too long", { ...valid(), to: long(NODE_ID_CHARS_MAX + 1) }],
  ...["term", "logTerm", "index", "commit", "rejectHint", "rejectHintTerm"].flatMap(
    (f): [string, unknown][] => [
      [`${f} negative`, { ...valid(), [f]: -1 }],
      [`${f} fractional`, { ...valid(), [f]: 0.5 }],
      [`${f} a string`, { ...valid(), [f]: "1" }],
      [`${f} beyond 2^53`, { ...valid(), [f]: 2 ** 53 }],
      [`${f} missing`, { ...valid(), [f]: undefined }],
    ],
  ),
  ["reject not a boolean", { ...valid(), reject: 0 }],
  ["context a string", { ...valid(), context: "x" }],
  ["context an array", { ...valid(), context: [1] }],
  ["entries not an array", { ...valid(), entries: {} }],
  ["an entry null", { ...validAppend(), entries: [null] }],
  ["entry index 0", validAppend([{ index: 0 }])],
  ["entry term 0", validAppend([{ term: 0 }])],
  ["entry index negative", validAppend([{ index: -1 }])],
  ["entry data a string", validAppend([{ data: "x" }])],
  ["entry type 3", validAppend([{ type: 3 }])],
  ["normal entry with a conf change", validAppend([{ confChange: ccEntry().confChange }])],
  ["normal entry with a conf state", validAppend([{ confState: ccEntry().confState }])],
  ["conf change entry without its change", validAppend([ccEntry({ confChange: null })])],
  [
    "conf change of an unknown type",
    validAppend([ccEntry({ confChange: { type: 9, nodeId: "d", context: new Uint8Array(0) } })]),
  ],
  [
    "conf change with an empty node id",
    validAppend([ccEntry({ confChange: { type: 1, nodeId: "", context: new Uint8Array(0) } })]),
  ],
  [
    "conf change with a string context",
    validAppend([ccEntry({ confChange: { type: 1, nodeId: "d", context: "" } })]),
  ],
  ["conf change entry without a conf state", validAppend([ccEntry({ confState: null })])],
  ["conf state voters not an array", validAppend([ccEntry({ confState: { voters: "a", learners: [] } })])],
  ["conf state learners missing", validAppend([ccEntry({ confState: { voters: ["a"] } })])],
  ["conf state with an empty id", validAppend([ccEntry({ confState: { voters: ["a", ""], learners: [] } })])],
  [
    "conf state with a voter twice",
    validAppend([ccEntry({ confState: { voters: ["a", "a"], learners: [] } })]),
  ],
  [
    "conf state with a voter that is a learner",
    validAppend([ccEntry({ confState: { voters: ["a"], learners: ["a"] } })]),
  ],
  ["snapshot not an object", { ...valid(), snapshot: 5 }],
  ["snapshot missing", { ...valid(), snapshot: undefined }],
  ["snapshot metadata missing", snap({ metadata: undefined })],
  ["snapshot metadata a number", snap({ metadata: 5 })],
  ["snapshot missing on a Snapshot message", { ...snap(), snapshot: null }],
  ["snapshot data a string", snap({ data: "x" })],
  ["snapshot without metadata", snap({ metadata: null })],
  ["snapshot index negative", snap({}, { index: -1 })],
  ["snapshot term fractional", snap({}, { term: 1.5 })],
  ["snapshot conf state null", snap({}, { confState: null })],
  ["snapshot conf state with a duplicate", snap({}, { confState: { voters: ["a"], learners: ["b", "b"] } })],
];

/** Everything status() says except the refusal counters (which a refusal is meant to move). */
const stateOf = (n: RaftNode): string =>
  JSON.stringify(n.status(), (k, v: unknown) => (k === "refused" ? undefined : v));

test("a message with any one malformed field is refused and changes nothing", (t) => {
  for (const [what, m] of malformed) {
    const a = lone({ id: "a" });
    drain(a);
    const before = stateOf(a);
    t.not(stepOutcome(a, m), null, what);
    t.is(stateOf(a), before, what);
    t.false(a.hasReady(), what);
  }
});

test("well-formed messages at the edges of every check are taken", (t) => {
  const ok: [string, Message][] = [
    ["a heartbeat", valid()],
    ["ids of the longest length", { ...valid(), from: long(NODE_ID_CHARS_MAX) }],
    ["every count at 0 and an empty context", msg({ type: MessageType.HeartbeatResp, from: "b", to: "a" })],
    ["large safe counts", { ...valid(), rejectHint: 2 ** 53 - 1, rejectHintTerm: 2 ** 40 }],
    ["an append with entry index 1 and term 1", validAppend([{}])],
    ["an append with a conf change entry", validAppend([ccEntry()])],
    [
      "a conf change entry that removes",
      validAppend([
        ccEntry({
          confChange: { type: 3, nodeId: "c", context: new Uint8Array(0) },
          confState: { voters: ["a", "b"], learners: [] },
        }),
      ]),
    ],
    ["a snapshot", snap()],
    ["a snapshot with learners", snap({}, { confState: { voters: ["a", "b"], learners: ["c"] } })],
    ["a rejection", msg({ type: MessageType.AppendResp, from: "b", to: "a", reject: true })],
  ];
  for (const [what, m] of ok) {
    const a = lone({ id: "a", voters: ["a", "b", long(NODE_ID_CHARS_MAX)] });
    drain(a);
    t.not(stepOutcome(a, m), "malformed", what);
  }
});

test("a message for another node, or from this node itself, is refused", (t) => {
  const a = lone({ id: "a" });
  t.not(stepOutcome(a, { ...valid(), to: "b" }), null);
  t.not(stepOutcome(a, { ...valid(), from: "a" }), null);
  t.is(a.status().term, 0);
  t.false(a.hasReady());
});
