import test from "ava";
import fc from "fast-check";
import {
  ConfChangeType,
  EntryType,
  TERM_MAX,
  type Entry,
  type Message,
  type MessageType,
} from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { Cluster, bytes } from "./raft-harness.js";
import { ROLES, fingerprint, groupWith } from "./forge.js";

/*
 * Properties over forged messages: whatever a peer sends, in whatever order, step() never throws (no
 * assertion trips), a refused message changes nothing, and a group fed refused messages among its honest
 * traffic still agrees on every applied entry. Fixed fast-check seeds: a failure replays.
 */

const IDS = ["a", "b", "d", "e", "z"];

/** Messages near the group's real state (terms 0..6, indexes 0..9), valid-looking or not. */
function arbMessage(to: string): fc.Arbitrary<Message> {
  const entries = fc
    .record({
      contiguous: fc.boolean(),
      terms: fc.array(fc.nat(6), { maxLength: 4 }),
      conf: fc.boolean(),
    })
    .map(({ contiguous, terms, conf }) => ({ contiguous, terms, conf }));
  return fc
    .record({
      type: fc.integer({ min: 1, max: 12 }),
      from: fc.constantFrom(...IDS),
      to: fc.constantFrom(to, to, to, "z"),
      term: fc.oneof(fc.nat(6), fc.constantFrom(TERM_MAX, TERM_MAX + 1)),
      logTerm: fc.nat(6),
      index: fc.nat(9),
      entries,
      commit: fc.nat(12),
      reject: fc.boolean(),
      rejectHint: fc.nat(12),
      rejectHintTerm: fc.nat(6),
      snapshot: fc.option(fc.record({ index: fc.nat(12), term: fc.nat(6), learner: fc.boolean() }), {
        nil: null,
      }),
      context: fc.constantFrom(new Uint8Array(0), bytes("r1"), bytes("r2")),
    })
    .map((r): Message => {
      const list: Entry[] = r.entries.terms.map((term, i) => ({
        index: r.entries.contiguous ? r.index + 1 + i : (i * 7 + term) % 11,
        term,
        type: r.entries.conf ? EntryType.ConfChange : EntryType.Normal,
        data: r.entries.conf ? new Uint8Array(0) : bytes(`f${i}`),
        confChange: r.entries.conf
          ? { type: ConfChangeType.AddLearner, nodeId: "z", context: bytes("") }
          : null,
        confState: r.entries.conf ? { voters: ["a", "b", "e"], learners: ["d", "z"] } : null,
      }));
      return {
        type: r.type as MessageType,
        from: r.from,
        to: r.to,
        term: r.term,
        logTerm: r.logTerm,
        index: r.index,
        entries: list,
        commit: r.commit,
        reject: r.reject,
        rejectHint: r.rejectHint,
        rejectHintTerm: r.rejectHintTerm,
        snapshot:
          r.snapshot === null
            ? null
            : {
                metadata: {
                  index: r.snapshot.index,
                  term: r.snapshot.term,
                  confState: { voters: ["a", "b", "e"], learners: r.snapshot.learner ? ["d"] : [] },
                },
                data: bytes("image"),
              },
        context: r.context,
      };
    });
}

for (const role of ROLES) {
  test(`property: forged message sequences to a ${role} never throw, and each refused one changes nothing`, (t) => {
    let refusedSeen = 0;
    let takenSeen = 0;
    fc.assert(
      fc.property(
        fc.array(
          arbMessage(role === "leader" ? "a" : role === "follower" ? "b" : role === "learner" ? "d" : "e"),
          { minLength: 1, maxLength: 12 },
        ),
        (msgs) => {
          const { g, n } = groupWith(role);
          for (const m of msgs) {
            const before = fingerprint(n);
            const r = n.core.step(m);
            if (r !== null) {
              refusedSeen++;
              if (fingerprint(n) !== before) return false;
            } else takenSeen++;
            // The node's output is handled as a driver would (persisted, not delivered).
            g.drainOne(n);
          }
          return true;
        },
      ),
      { seed: 20261130, numRuns: 40 },
    );
    t.true(refusedSeen > 0 && takenSeen > 0, `refused ${refusedSeen}, taken ${takenSeen}`);
  });
}

test("honest traffic refuses nothing: elections, proposals, transfers, a learner added and promoted, ReadIndex", (t) => {
  const g = new Cluster(["a", "b", "e"], { preVote: true, checkQuorum: true });
  g.campaign("a");
  for (let i = 0; i < 5; i++) g.node("a").core.propose(bytes(`p${i}`));
  g.pump();
  g.add("d", new SimDisk(null));
  g.node("a").core.proposeConfChange({ type: ConfChangeType.AddLearner, nodeId: "d", context: bytes("") });
  g.tickAll(3);
  g.node("b").core.readIndex(bytes("read-1"));
  g.pump();
  g.node("a").core.transferLeadership("e");
  g.pump();
  g.node("e").core.proposeConfChange({
    type: ConfChangeType.PromoteLearner,
    nodeId: "d",
    context: bytes(""),
  });
  g.tickAll(3);
  g.isolate("e");
  g.tickAll(40);
  g.heal();
  g.tickAll(10);
  const leader = g.leader()!;
  leader.core.propose(bytes("last"));
  g.tickAll(2);
  for (const id of ["a", "b", "d", "e"]) {
    t.true(g.appliedData(id).includes("last"), `${id} applied the last write`);
    t.deepEqual(
      Object.entries(g.node(id).core.status().refused).filter(([, c]) => c > 0),
      [],
      `${id} refused nothing`,
    );
  }
  t.deepEqual(g.node("e").core.status().confState.voters.sort(), ["a", "b", "d", "e"]);
});

/** A message made invalid in a way no node state excuses, so every node refuses it. */
function arbInvalid(to: string): fc.Arbitrary<Message> {
  const corrupt: ((m: Message) => Message)[] = [
    (m) => ({ ...m, term: TERM_MAX + 1 + m.term }),
    (m) => ({ ...m, type: 5, logTerm: m.term + 1 }),
    (m) => ({ ...m, type: 5, entries: [{ ...fakeEntry, index: m.index + 2, term: m.logTerm }] }),
    (m) => ({ ...m, type: 5, logTerm: 0, entries: [{ ...fakeEntry, index: m.index + 1, term: m.term + 1 }] }),
    (m) => ({
      ...m,
      type: 9,
      snapshot: {
        metadata: { index: 3, term: m.term + 1, confState: { voters: ["a"], learners: [] } },
        data: bytes(""),
      },
    }),
    (m) => ({ ...m, to: "zz" }),
    (m) => ({ ...m, from: to }),
    (m) => ({ ...m, from: "z", type: ([6, 8, 2, 4, 11] as const)[m.index % 5]! }),
    (m) => ({ ...m, context: "not bytes" as never }),
  ];
  return fc.tuple(arbMessage(to), fc.nat(corrupt.length - 1)).map(([m, i]) => corrupt[i]!({ ...m, to }));
}

const fakeEntry: Entry = {
  index: 1,
  term: 1,
  type: EntryType.Normal,
  data: bytes("x"),
  confChange: null,
  confState: null,
};

test("property: a group fed invalid messages among its traffic refuses each, applies the same entries everywhere and commits every proposal", (t) => {
  let forgedTotal = 0;
  fc.assert(
    fc.property(
      fc
        .array(fc.constantFrom("a", "b", "d", "e"), { minLength: 1, maxLength: 30 })
        .chain((tos) => fc.tuple(...tos.map((to) => arbInvalid(to).map((m) => [to, m] as const)))),
      (forged) => {
        const g = new Cluster(["a", "b", "e"]);
        g.campaign("a");
        g.add("d", new SimDisk(null));
        g.node("a").core.proposeConfChange({
          type: ConfChangeType.AddLearner,
          nodeId: "d",
          context: bytes(""),
        });
        g.pump();
        let p = 0;
        for (const [to, m] of forged) {
          const n = g.node(to);
          const before = fingerprint(n);
          if (n.core.step(m) === null || fingerprint(n) !== before) return false;
          forgedTotal++;
          const leader = g.leader();
          if (leader !== undefined) leader.core.propose(bytes(`w${p++}`));
          g.tickAll(1);
        }
        g.tickAll(3);
        const want = Array.from({ length: p }, (_, i) => `w${i}`);
        return ["a", "b", "d", "e"].every((id) => JSON.stringify(g.appliedData(id)) === JSON.stringify(want));
      },
    ),
    { seed: 7, numRuns: 40 },
  );
  t.true(forgedTotal > 200, `${forgedTotal} forged messages refused`);
});
