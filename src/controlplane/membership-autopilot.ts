/**
 * Runs on the leader, every `intervalMs`: keeps the raft configuration in line with the members of the
 * control state, and keeps the voter target (DESIGN.md §3, after Vault's autopilot and Consul's
 * redundancy zones). One configuration change per round (raft makes one at a time), in this order:
 *
 *   1. a removed member still in the configuration leaves it;
 *   2. an active or leaving member not in the configuration is added as a learner;
 *   3. below the voter target, a healthy learner (active, answering, caught up, a learner for at least
 *      `stabilizationMs`) is promoted, a zone without a voter first;
 *   4. a voter that is fenced, leaving, or has not answered for `deadVoterMs` is removed once the
 *      healthy voters meet the target without it (step 3 promotes its replacement first), and only if
 *      the live voters left still make a quorum.
 *
 * decideAutopilotStep is pure (tested by table); the loop around it only reads status and proposes.
 */
import type { ConfState, ProgressStatus } from "../../cluster/raft/core/types.js";
import type { MemberRecord } from "./control-records.js";

export interface AutopilotPolicy {
  /** Voters wanted: 3 or 5 (fewer while fewer members are healthy). */
  voterTarget: number;
  stabilizationMs: number;
  deadVoterMs: number;
  /** A learner at most this many entries behind the leader's last index counts as caught up. */
  catchUpEntriesMax: number;
}

export const AUTOPILOT_DEFAULTS: AutopilotPolicy = {
  voterTarget: 3,
  stabilizationMs: 2_000,
  deadVoterMs: 10_000,
  catchUpEntriesMax: 64,
};

export interface AutopilotView {
  self: string;
  nowMs: number;
  confState: ConfState;
  lastIndex: number;
  progress: Record<string, ProgressStatus>;
  members: readonly MemberRecord[];
  /** When each learner was first seen in the configuration by this leader. */
  learnerSinceMs: ReadonlyMap<string, number>;
  /** When each voter last answered (recentActive), as seen by this leader. */
  voterSeenMs: ReadonlyMap<string, number>;
}

export type AutopilotStep =
  | { kind: "remove"; id: string; why: string }
  | { kind: "add-learner"; id: string; address: string }
  | { kind: "promote"; id: string; why: string }
  | null;

export function decideAutopilotStep(v: AutopilotView, policy: AutopilotPolicy): AutopilotStep {
  const byId = new Map(v.members.map((m) => [m.id, m]));
  const inConfig = new Set([...v.confState.voters, ...v.confState.learners]);
  // 1. Removed members leave (the leader itself leaves only after handing over leadership).
  for (const id of inConfig) {
    if (id !== v.self && byId.get(id)?.state === "removed")
      return { kind: "remove", id, why: "member removed" };
  }
  // 2. Active and leaving members replicate the log.
  for (const m of v.members) {
    if ((m.state === "active" || m.state === "leaving") && !inConfig.has(m.id)) {
      return { kind: "add-learner", id: m.id, address: m.address };
    }
  }
  const live = (id: string): boolean =>
    id === v.self || v.nowMs - (v.voterSeenMs.get(id) ?? -Infinity) < policy.deadVoterMs;
  const unhealthyVoter = (id: string): string | null => {
    const state = byId.get(id)?.state;
    if (state === "fenced" || state === "leaving" || state === "removed") return `voter is ${state}`;
    if (!live(id)) return `voter has not answered for ${policy.deadVoterMs} ms`;
    return null;
  };
  const voters = v.confState.voters;
  const healthyVoters = voters.filter((id) => unhealthyVoter(id) === null);
  // 3. Promote toward the target, counting only healthy voters (a dead one is being replaced).
  if (healthyVoters.length < policy.voterTarget) {
    const zonesWithVoter = new Set(healthyVoters.map((id) => byId.get(id)?.zone));
    const candidates = v.confState.learners
      .filter((id) => {
        const m = byId.get(id);
        const p = v.progress[id];
        const since = v.learnerSinceMs.get(id);
        return (
          m?.state === "active" &&
          p !== undefined &&
          p.recentActive &&
          p.match > 0 &&
          v.lastIndex - p.match <= policy.catchUpEntriesMax &&
          since !== undefined &&
          v.nowMs - since >= policy.stabilizationMs
        );
      })
      .sort((a, b) => {
        const za = zonesWithVoter.has(byId.get(a)!.zone) ? 1 : 0;
        const zb = zonesWithVoter.has(byId.get(b)!.zone) ? 1 : 0;
        return za - zb || (a < b ? -1 : 1);
      });
    const pick = candidates[0];
    if (pick !== undefined) {
      const newZone = !zonesWithVoter.has(byId.get(pick)!.zone);
      return { kind: "promote", id: pick, why: newZone ? "voter target, new zone" : "voter target" };
    }
  }
  // 4. Replace an unhealthy voter once the target is otherwise met, never below a live quorum.
  for (const id of voters) {
    if (id === v.self) continue;
    const why = unhealthyVoter(id);
    if (why === null) continue;
    const after = voters.filter((x) => x !== id);
    const liveAfter = after.filter(live).length;
    const quorumAfter = Math.floor(after.length / 2) + 1;
    if (healthyVoters.length >= policy.voterTarget && liveAfter >= quorumAfter) {
      return { kind: "remove", id, why };
    }
  }
  return null;
}
