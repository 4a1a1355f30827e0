/**
 * The records a leader adds for itself when the control state lacks them: its own member record (the
 * founding peer, which `init` made the raft group's only voter), its current address (a restarted
 * peer may listen elsewhere), the CMK epoch it holds, and the cluster CA with its private key wrapped
 * under the CMK (so every member can issue certificates and none keeps the key in the clear).
 * Pure: the facts come in, the commands go out, and the state machine refuses any that a race made stale.
 */
import type { ControlCommand } from "./control-command.js";
import type { ControlState } from "./control-state.js";

export interface FoundingFacts {
  peerId: string;
  address: string;
  certificateSerial: string;
  nowMs: number;
  /** The CMK epoch this peer's barrier uses. */
  cmkEpoch: number;
  /** The cluster CA, its key wrapped under `cmkEpoch`; undefined when this peer has no CA key to offer. */
  ca?: () => { certificatePem: string; wrappedKey: string };
}

export const FOUNDING_ZONE = "zone-1";

export function foundingCommands(state: ControlState, f: FoundingFacts): ControlCommand[] {
  const out: ControlCommand[] = [];
  const self = state.member(f.peerId);
  // A leader is a voter, and every voter but the founding one entered through its member record
  // (admitted, or added by a test): a leader without a record is the founding peer. Not "while the
  // state is empty": an enrollment (or a test's unattested add) committed before this duty first ran
  // would leave the founder out of its own cluster for good.
  if (self === undefined) {
    out.push({
      type: "member.add-unattested",
      id: f.peerId,
      address: f.address,
      zone: FOUNDING_ZONE,
      weight: 1,
      certificateSerial: f.certificateSerial,
      atMs: f.nowMs,
    });
  } else if (self !== undefined && self.state !== "removed" && self.address !== f.address) {
    out.push({ type: "member.address", id: f.peerId, address: f.address });
  }
  if (state.cmkEpochs().length === 0) out.push({ type: "cmk.epoch-add", epoch: f.cmkEpoch, atMs: f.nowMs });
  if (state.clusterCa() === null && f.ca !== undefined) {
    const ca = f.ca();
    out.push({
      type: "ca.set",
      ca: { certificatePem: ca.certificatePem, wrappedKey: ca.wrappedKey, epoch: f.cmkEpoch },
    });
  }
  return out;
}
