/**
 * What a forger needs in the raft unit tests: groups with a node in each role, messages built field by
 * field, and a fingerprint of a core's whole state to prove a refused message changed nothing.
 */
import {
  ConfChangeType,
  EntryType,
  MessageType,
  type Entry,
  type Message,
  type RaftConfig,
} from "../../cluster/raft/core/index.js";
import { SimDisk } from "../sim/sim-disk.js";
import { Cluster, bytes, type HarnessNode } from "./raft-harness.js";

export const ROLES = ["leader", "follower", "learner", "candidate", "preCandidate"] as const;
export type RoleName = (typeof ROLES)[number];

/**
 * Voters a, b, e and learner d; a leads in term 3 (two transfers, so terms 1..3 are in the logs) with
 * "x" committed everywhere. `role` picks the node the test steps into: a (leader), b (follower), d
 * (learner), or e isolated and ticked into candidate or pre-candidate.
 */
export function groupWith(
  role: RoleName,
  config: Partial<Omit<RaftConfig, "id" | "random">> = {},
): { g: Cluster; n: HarnessNode } {
  const g = new Cluster(["a", "b", "e"], { preVote: role === "preCandidate", ...config });
  g.campaign("a");
  g.node("a").core.propose(bytes("x"));
  g.pump();
  g.node("a").core.transferLeadership("b");
  g.pump();
  g.node("b").core.transferLeadership("a");
  g.pump();
  g.add("d", new SimDisk(null));
  g.node("a").core.proposeConfChange({ type: ConfChangeType.AddLearner, nodeId: "d", context: bytes("") });
  g.pump();
  g.tickAll(2);
  const id = { leader: "a", follower: "b", learner: "d", candidate: "e", preCandidate: "e" }[role];
  if (role === "candidate" || role === "preCandidate") {
    g.isolate("e");
    const e = g.node("e");
    for (let i = 0; i < 100 && e.core.status().role !== role; i++) {
      e.core.tick();
      g.pump();
    }
  }
  const n = g.node(id);
  if (n.core.status().role !== (role === "learner" ? "follower" : role)) {
    throw new Error(`could not put ${id} in role ${role}: ${n.core.status().role}`);
  }
  return { g, n };
}

export function msg(over: Partial<Message> & Pick<Message, "type" | "from" | "to" | "term">): Message {
  return {
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

export function entry(index: number, term: number, data = `e${index}t${term}`): Entry {
  return { index, term, type: EntryType.Normal, data: bytes(data), confChange: null, confState: null };
}

/**
 * The whole state of a core (every field, Maps and Sets included) except the refusal counters, plus
 * whether it has output waiting: equal fingerprints mean a step changed nothing that matters.
 */
export function fingerprint(n: HarnessNode): string {
  return (
    JSON.stringify(n.core, (key, v: unknown) => {
      if (key === "refused") return undefined;
      if (v instanceof Map) return [...v.entries()];
      if (v instanceof Set) return [...v.values()];
      if (v instanceof Uint8Array) return [...v];
      return v;
    }) + `|ready=${n.core.hasReady()}`
  );
}

/** Steps `m` into `n`; returns the refusal kind (or null) and whether the node's state is unchanged. */
export function stepForged(n: HarnessNode, m: Message): { kind: string | null; unchanged: boolean } {
  const before = fingerprint(n);
  const r = n.core.step(m);
  return { kind: r?.kind ?? null, unchanged: fingerprint(n) === before };
}

export { MessageType };
