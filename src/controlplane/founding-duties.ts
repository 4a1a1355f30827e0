/**
 * The records a leader adds for itself when the control state lacks them: its own member record (the
 * founding peer, which `init` made the raft group's only voter), its current address (a restarted
 * peer may listen elsewhere), the CMK epoch it holds, and the cluster CA with its private key wrapped
 * under the CMK (so every member can issue certificates and none keeps the key in the clear).
 *
 * A founder made by `init --tpm` has its TPM identity (src/attestation/founder-attestation.ts) and is
 * recorded with the entries an attested join commits, in order: its PCR policy, its enrollment (EK),
 * its admission (AK, quote clock, certificate), its confirmation; so continuous attestation re-quotes
 * it and can fence it like any member. Each round emits what is still missing, so a leader that stops
 * halfway finishes the next time it leads.
 * Pure: the facts come in, the commands go out, and the state machine refuses any that a race made stale.
 */
import type { FounderAttestation } from "../attestation/founder-attestation.js";
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
  /** This peer's TPM identity as `init --tpm` recorded it; undefined: recorded without attestation. */
  attestation?: FounderAttestation;
}

export const FOUNDING_ZONE = "zone-1";

export function foundingCommands(state: ControlState, f: FoundingFacts): ControlCommand[] {
  const out: ControlCommand[] = [];
  const self = state.member(f.peerId);
  // A leader is a voter, and every voter but the founding one entered through its member record
  // (admitted, or added by a test): a leader without a record is the founding peer. Not "while the
  // state is empty": an enrollment (or a test's unattested add) committed before this duty first ran
  // would leave the founder out of its own cluster for good.
  if (f.attestation !== undefined && (self === undefined || ATTESTED_FOUNDING_STEPS.has(self.state))) {
    out.push(...attestedFounding(state, f, f.attestation));
  } else if (self === undefined) {
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

/** The founder's own states on its way to active; anything else is not the founding's to change. */
const ATTESTED_FOUNDING_STEPS = new Set<string>(["enrolled", "joining"]);

/** What the attested founding still lacks, in order; each entry is valid once the ones before it apply. */
function attestedFounding(state: ControlState, f: FoundingFacts, a: FounderAttestation): ControlCommand[] {
  const out: ControlCommand[] = [];
  const self = state.member(f.peerId);
  if (self === undefined) {
    if (state.policy(a.policyName) === undefined)
      out.push({ type: "policy.put", name: a.policyName, policy: a.policy, atMs: f.nowMs });
    out.push({
      type: "member.enroll",
      id: f.peerId,
      address: f.address,
      zone: FOUNDING_ZONE,
      weight: 1,
      policy: a.policyName,
      ekPublicKey: a.ekPublicKey,
      ekCertificate: a.ekCertificate,
      joinTokenSha256: "",
      joinTokenExpiresAtMs: 0,
      atMs: f.nowMs,
      founder: true,
    });
  }
  if (self === undefined || self.state === "enrolled") {
    out.push({
      type: "member.admit",
      id: f.peerId,
      from: "enrolled",
      certificateSerial: f.certificateSerial,
      akPublic: a.akPublic,
      quoteClock: a.quoteClock,
      atMs: f.nowMs,
    });
  }
  out.push({ type: "member.confirm", id: f.peerId, certificateSerial: f.certificateSerial, atMs: f.nowMs });
  return out;
}
