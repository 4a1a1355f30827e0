/**
 * Whether fencing a member keeps the control state able to commit (raft safety and liveness, issue 9
 * item 5). A fenced voter stays in the raft configuration (the autopilot replaces it only once a
 * healthy learner can take its place) but is sent nothing and heard from nowhere, so it counts
 * against the quorum like a dead voter. Fencing one more voter when only a bare quorum of unfenced
 * voters is left would stop every commit, and with it every unfence: the cluster could never heal.
 * Such a fence is held back (the monitor audits that it would have fenced, and why not).
 */
import type { MemberRecord } from "./control-records.js";

/** null when fencing `peerId` leaves a quorum of unfenced voters; otherwise why it is held back. */
export function fenceQuorumRefusal(
  peerId: string,
  voters: readonly string[],
  memberOf: (id: string) => Pick<MemberRecord, "state"> | undefined,
): string | null {
  if (!voters.includes(peerId)) return null;
  const quorum = Math.floor(voters.length / 2) + 1;
  const left = voters.filter((id) => {
    const state = memberOf(id)?.state;
    return id !== peerId && state !== "fenced" && state !== "removed";
  }).length;
  return left >= quorum
    ? null
    : `fencing voter ${peerId} would leave ${left} of ${voters.length} voters unfenced, below the quorum of ${quorum}`;
}
