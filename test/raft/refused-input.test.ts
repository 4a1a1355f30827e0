import test from "ava";
import { TERM_MAX, type Message, type RefusalKind } from "../../cluster/raft/core/index.js";
import { bytes } from "./raft-harness.js";
import { MessageType, entry, groupWith, msg, stepForged, type RoleName } from "./forge.js";

/*
 * Each kind of message no honest peer sends, stepped into a node of the role where it would do harm:
 * refused with its kind, counted once, and the node's whole state unchanged. Beside each, the nearest
 * honest message, which is taken: the checks refuse exactly what they name.
 * The group (forge.ts): voters a, b, e and learner d, leader a in term 3, log 1..5 with terms 1,1,2,3,3.
 */

const T = 3;
const LAST = 5;
const snap = (index: number, term: number): Message["snapshot"] => ({
  metadata: { index, term, confState: { voters: ["a", "b", "e"], learners: ["d"] } },
  data: bytes("image"),
});

interface Case {
  kind: RefusalKind;
  role: RoleName;
  what: string;
  m: (to: string) => Message;
}

const refused: Case[] = [
  {
    kind: "termTooLarge",
    role: "follower",
    what: "a heartbeat with a term above TERM_MAX",
    m: (to) => msg({ type: MessageType.Heartbeat, from: "a", to, term: TERM_MAX + 1 }),
  },
  {
    kind: "logTermAboveMessage",
    role: "follower",
    what: "an append whose logTerm is above its term",
    m: (to) => msg({ type: MessageType.Append, from: "a", to, term: T, index: LAST, logTerm: T + 1 }),
  },
  {
    kind: "logTermAboveMessage",
    role: "follower",
    what: "a vote request whose last log term is above its term",
    m: (to) => msg({ type: MessageType.Vote, from: "e", to, term: T + 1, index: LAST, logTerm: T + 2 }),
  },
  {
    kind: "logTermAboveMessage",
    role: "leader",
    what: "a pre-vote request whose last log term is above its term",
    m: (to) => msg({ type: MessageType.PreVote, from: "e", to, term: T + 1, index: LAST, logTerm: T + 2 }),
  },
  {
    kind: "entryGap",
    role: "follower",
    what: "an append whose first entry does not follow index",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "a",
        to,
        term: T,
        index: LAST,
        logTerm: T,
        entries: [entry(7, T)],
      }),
  },
  {
    kind: "entryGap",
    role: "learner",
    what: "an append whose second entry skips an index",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "a",
        to,
        term: T,
        index: LAST,
        logTerm: T,
        entries: [entry(6, T), entry(8, T)],
      }),
  },
  {
    kind: "entryTermAboveMessage",
    role: "follower",
    what: "an append entry newer than the message's term",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "a",
        to,
        term: T,
        index: LAST,
        logTerm: T,
        entries: [entry(6, T), entry(7, T + 1)],
      }),
  },
  {
    kind: "entryTermDecreasing",
    role: "follower",
    what: "an append entry older than logTerm",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "a",
        to,
        term: T,
        index: LAST,
        logTerm: T,
        entries: [entry(6, 2)],
      }),
  },
  {
    kind: "entryTermDecreasing",
    role: "follower",
    what: "append entries whose terms go down after going up",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "a",
        to,
        term: T,
        index: 2,
        logTerm: 1,
        entries: [entry(3, 3), entry(4, 2)],
      }),
  },
  {
    kind: "snapshotTermAboveMessage",
    role: "follower",
    what: "a snapshot newer than the message's term",
    m: (to) => msg({ type: MessageType.Snapshot, from: "a", to, term: T, snapshot: snap(100, T + 1) }),
  },
  {
    kind: "ackBeyondLog",
    role: "leader",
    what: "an ack beyond the leader's last index",
    m: (to) => msg({ type: MessageType.AppendResp, from: "b", to, term: T, index: LAST + 1 }),
  },
  {
    kind: "ackBeyondLog",
    role: "leader",
    what: "a rejection about an index beyond the leader's last index",
    m: (to) =>
      msg({
        type: MessageType.AppendResp,
        from: "b",
        to,
        term: T,
        index: LAST + 1,
        reject: true,
        rejectHint: 2,
      }),
  },
  {
    kind: "unknownSender",
    role: "leader",
    what: "an ack from a non-member",
    m: (to) => msg({ type: MessageType.AppendResp, from: "z", to, term: T, index: LAST }),
  },
  {
    kind: "unknownSender",
    role: "leader",
    what: "an ack from a non-member in a newer term (the leader does not step down)",
    m: (to) => msg({ type: MessageType.AppendResp, from: "z", to, term: T + 5, index: LAST }),
  },
  {
    kind: "unknownSender",
    role: "leader",
    what: "a heartbeat ack from a non-member",
    m: (to) => msg({ type: MessageType.HeartbeatResp, from: "z", to, term: T }),
  },
  {
    kind: "unknownSender",
    role: "leader",
    what: "a read forwarded by a non-member",
    m: (to) => msg({ type: MessageType.ReadIndex, from: "z", to, term: T, context: bytes("r") }),
  },
  {
    kind: "unknownSender",
    role: "candidate",
    what: "a granted vote from a non-member",
    m: (to) => msg({ type: MessageType.VoteResp, from: "z", to, term: T + 1 }),
  },
  {
    kind: "unknownSender",
    role: "preCandidate",
    what: "a granted pre-vote from a non-member",
    m: (to) => msg({ type: MessageType.PreVoteResp, from: "z", to, term: T + 1 }),
  },
  {
    kind: "notFromLeader",
    role: "follower",
    what: "a TimeoutNow from a voter that is not the leader",
    m: (to) => msg({ type: MessageType.TimeoutNow, from: "e", to, term: T }),
  },
  {
    kind: "notFromLeader",
    role: "follower",
    what: "a TimeoutNow in a newer term",
    m: (to) => msg({ type: MessageType.TimeoutNow, from: "a", to, term: T + 1 }),
  },
  {
    kind: "notFromLeader",
    role: "follower",
    what: "a read answer from a voter that is not the leader",
    m: (to) =>
      msg({ type: MessageType.ReadIndexResp, from: "e", to, term: T, index: 1, context: bytes("r") }),
  },
  {
    kind: "notFromLeader",
    role: "leader",
    what: "a TimeoutNow sent to the leader itself",
    m: (to) => msg({ type: MessageType.TimeoutNow, from: "b", to, term: T }),
  },
  {
    kind: "notFromLeader",
    role: "candidate",
    what: "a TimeoutNow in a term newer than a candidate's",
    m: (to) => msg({ type: MessageType.TimeoutNow, from: "a", to, term: T + 2 }),
  },
  {
    kind: "conflictingLeader",
    role: "follower",
    what: "a heartbeat from a second leader in the same term",
    m: (to) => msg({ type: MessageType.Heartbeat, from: "e", to, term: T, commit: LAST }),
  },
  {
    kind: "conflictingLeader",
    role: "follower",
    what: "an append from a second leader in the same term",
    m: (to) =>
      msg({
        type: MessageType.Append,
        from: "e",
        to,
        term: T,
        index: LAST,
        logTerm: T,
        entries: [entry(6, T)],
      }),
  },
  {
    kind: "conflictingLeader",
    role: "learner",
    what: "a snapshot from a second leader in the same term",
    m: (to) => msg({ type: MessageType.Snapshot, from: "e", to, term: T, snapshot: snap(100, T) }),
  },
  {
    kind: "conflictingLeader",
    role: "leader",
    what: "a heartbeat to the leader from another in its own term",
    m: (to) => msg({ type: MessageType.Heartbeat, from: "b", to, term: T }),
  },
];

for (const c of refused) {
  test(`refused (${c.kind}): ${c.what}, to the ${c.role}; counted once, nothing else changes`, (t) => {
    const { n } = groupWith(c.role);
    const r = stepForged(n, c.m(n.id));
    t.is(r.kind, c.kind);
    t.true(r.unchanged, "the node's state is unchanged");
    const counts = n.core.status().refused;
    t.is(counts[c.kind], 1);
    t.is(
      Object.values(counts).reduce((a, b) => a + b, 0),
      1,
      "no other kind counted",
    );
  });
}

test("a refusal is a value naming what is wrong, without entry data", (t) => {
  const { n } = groupWith("follower");
  const secret = "wrapped-key-material";
  const r = n.core.step(
    msg({
      type: MessageType.Append,
      from: "a",
      to: "b",
      term: T,
      index: LAST,
      logTerm: T,
      entries: [entry(6, T, secret), entry(9, T, secret)],
    }),
  );
  t.deepEqual(r, { kind: "entryGap", detail: "entries[1].index 9 does not follow 6" });
  t.false(r!.detail.includes(secret));
});

test("counts add up per kind over repeated refusals", (t) => {
  const { n } = groupWith("leader");
  for (let i = 0; i < 3; i++)
    n.core.step(msg({ type: MessageType.HeartbeatResp, from: "z", to: "a", term: T }));
  n.core.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: T, index: 99 }));
  t.like(n.core.status().refused, { unknownSender: 3, ackBeyondLog: 1, malformed: 0 });
  // status() hands out a copy: changing it changes nothing inside.
  n.core.status().refused.unknownSender = 100;
  t.is(n.core.status().refused.unknownSender, 3);
});

// ---------------------------------------------------------------- the honest neighbours

test("taken: a term of exactly TERM_MAX", (t) => {
  const { n } = groupWith("follower");
  t.is(n.core.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: TERM_MAX })), null);
  t.is(n.core.status().term, TERM_MAX);
});

test("taken: logTerm equal to the term (append and votes); a heartbeat's logTerm is not looked at", (t) => {
  const { n } = groupWith("follower");
  t.is(
    n.core.step(msg({ type: MessageType.Append, from: "a", to: "b", term: T, index: LAST, logTerm: T })),
    null,
  );
  t.is(n.core.step(msg({ type: MessageType.Heartbeat, from: "a", to: "b", term: T, logTerm: 99 })), null);
  t.is(
    n.core.step(
      msg({ type: MessageType.PreVote, from: "e", to: "b", term: T + 1, index: LAST, logTerm: T + 1 }),
    ),
    null,
  );
  t.is(
    n.core.step(
      msg({ type: MessageType.Vote, from: "e", to: "b", term: T + 1, index: LAST, logTerm: T + 1 }),
    ),
    null,
  );
  t.is(n.core.status().vote, "e", "the vote was granted");
});

test("taken: contiguous entries of equal terms, up to the message's term", (t) => {
  const { n } = groupWith("follower");
  const m = msg({
    type: MessageType.Append,
    from: "a",
    to: "b",
    term: T,
    index: LAST,
    logTerm: T,
    entries: [entry(6, T), entry(7, T)],
  });
  t.is(n.core.step(m), null);
  t.is(n.core.status().lastIndex, 7);
});

test("taken: entries on a message other than an append are not looked at (nothing reads them)", (t) => {
  const { n } = groupWith("follower");
  const m = msg({
    type: MessageType.Heartbeat,
    from: "a",
    to: "b",
    term: T,
    entries: [entry(9, T + 5), entry(2, 1)],
  });
  t.is(n.core.step(m), null);
  t.is(n.core.status().lastIndex, LAST);
});

test("taken: a snapshot of the message's own term", (t) => {
  const { n } = groupWith("follower");
  t.is(
    n.core.step(msg({ type: MessageType.Snapshot, from: "a", to: "b", term: T, snapshot: snap(100, T) })),
    null,
  );
  t.is(n.core.status().lastIndex, 100);
});

test("taken: an ack of exactly the leader's last index; an ack beyond it to a non-leader or in another term is not an impossible ack", (t) => {
  const { n } = groupWith("leader");
  t.is(n.core.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: T, index: LAST })), null);
  const f = groupWith("follower").n;
  t.is(f.core.step(msg({ type: MessageType.AppendResp, from: "a", to: "b", term: T, index: 99 })), null);
  // A newer term from a member: the leader steps down (nothing about its log is claimed).
  t.is(n.core.step(msg({ type: MessageType.AppendResp, from: "b", to: "a", term: T + 1, index: 99 })), null);
  t.is(n.core.status().role, "follower");
});

test("taken: acks and forwarded reads from members, learners included", (t) => {
  const { n } = groupWith("leader");
  t.is(n.core.step(msg({ type: MessageType.HeartbeatResp, from: "d", to: "a", term: T })), null);
  t.is(
    n.core.step(msg({ type: MessageType.ReadIndex, from: "d", to: "a", term: T, context: bytes("r") })),
    null,
  );
  t.true(n.core.hasReady(), "the read is being confirmed");
});

test("taken: appends and vote requests from a node this node does not know (its configuration may lag)", (t) => {
  const { n } = groupWith("follower");
  t.is(
    n.core.step(msg({ type: MessageType.Vote, from: "z", to: "b", term: T + 1, index: LAST, logTerm: T })),
    null,
  );
  t.is(n.core.status().vote, "z");
  t.is(
    n.core.step(msg({ type: MessageType.Append, from: "z", to: "b", term: T + 1, index: LAST, logTerm: T })),
    null,
  );
  t.is(n.core.status().leader, "z");
});

test("taken: TimeoutNow and ReadIndexResp from the leader of this term", (t) => {
  const { n } = groupWith("follower");
  t.is(
    n.core.step(
      msg({ type: MessageType.ReadIndexResp, from: "a", to: "b", term: T, index: 4, context: bytes("r") }),
    ),
    null,
  );
  const rd = n.core.ready()!;
  t.deepEqual(rd.readStates, [{ index: 4, context: bytes("r") }]);
  n.core.advance(rd);
  t.is(n.core.step(msg({ type: MessageType.TimeoutNow, from: "a", to: "b", term: T })), null);
  t.is(n.core.status().role, "candidate");
});

test("dropped uncounted: a ReadIndexResp to a node that knows no leader, and a stale TimeoutNow", (t) => {
  const { n } = groupWith("candidate");
  const r = stepForged(
    n,
    msg({ type: MessageType.ReadIndexResp, from: "a", to: "e", term: T + 1, index: 4, context: bytes("r") }),
  );
  t.deepEqual(r, { kind: null, unchanged: true });
  const f = groupWith("follower").n;
  t.deepEqual(stepForged(f, msg({ type: MessageType.TimeoutNow, from: "e", to: "b", term: T - 1 })), {
    kind: null,
    unchanged: true,
  });
  t.true(Object.values(n.core.status().refused).every((c) => c === 0));
  t.true(Object.values(f.core.status().refused).every((c) => c === 0));
});

test("dropped uncounted: TimeoutNow and ReadIndexResp to a follower that has voted in this term but knows no leader yet", (t) => {
  const { n } = groupWith("follower");
  t.is(
    n.core.step(msg({ type: MessageType.Vote, from: "e", to: "b", term: T + 1, index: LAST, logTerm: T })),
    null,
  );
  const rd = n.core.ready()!;
  n.core.advance(rd);
  t.is(n.core.status().leader, null);
  for (const m of [
    msg({ type: MessageType.TimeoutNow, from: "e", to: "b", term: T + 1 }),
    msg({ type: MessageType.ReadIndexResp, from: "e", to: "b", term: T + 1, index: 4, context: bytes("r") }),
  ]) {
    t.deepEqual(stepForged(n, m), { kind: null, unchanged: true });
  }
  t.is(n.core.status().role, "follower");
});

test("taken: the first leader a candidate hears of in its term", (t) => {
  const { n } = groupWith("candidate");
  t.is(n.core.step(msg({ type: MessageType.Heartbeat, from: "b", to: "e", term: T + 1 })), null);
  t.is(n.core.status().leader, "b");
  t.is(n.core.status().role, "follower");
});
