/**
 * Continuous attestation in a running peer (issue 9 item 5, DESIGN.md §5), composed from the control
 * state and the peer's own TPM:
 *
 * - this peer's TPM answers other members' re-quotes (lockbox.v1.AttestationService on the peer port),
 *   only to a current, non-fenced member's certificate (ControlPlane.peerRefusal);
 * - an AttestationMonitor re-quotes on `intervalMs`: the raft leader every member (and records every
 *   outcome in the control state), a follower the leader only (and may only fence it, or return it
 *   from down: the leader cannot re-quote itself). Who decides is
 *   the leader because its verdicts become raft entries every member applies in the same order: all
 *   peers agree on who is fenced, and quote clocks are recorded by one verifier, so they only move on;
 * - SelfFence tells whether this peer itself is fenced (its own state, or the others' refusals), for
 *   health, /readyz and status.
 *
 * A peer without a TPM (the development master-key file) answers no re-quote; the monitor skips
 * members that never activated an AK (added without attestation).
 */
import { AttestationMonitor, type MonitorScope } from "../attestation/attestation-monitor.js";
import { GrpcRequoteChannel } from "../attestation/grpc-requote-channel.js";
import type { JoinAuthority } from "../attestation/join-authority.js";
import type { JoinAuditSink } from "../attestation/join-verifier.js";
import { requoteService } from "../attestation/requote-service.js";
import { SelfFence, type SelfFenceState } from "../attestation/self-fence.js";
import type { ControlPlane } from "../controlplane/control-plane.js";
import { fenceQuorumRefusal } from "../controlplane/fence-quorum.js";
import { peerDialAddress, type PeerDialOverrides } from "../net/peer-dial.js";
import { PeerCertificateVerifier } from "../pki/peer-certificate-verifier.js";
import type { PeerRefusalCode } from "../pki/peer-refusal.js";
import type { PeerTpm } from "../sealing/peer-tpm.js";
import type * as grpc from "@grpc/grpc-js";

export interface ContinuousAttestationOptions {
  peerId: string;
  control: ControlPlane;
  authority: JoinAuthority;
  tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  tpm: PeerTpm | undefined;
  audit: JoinAuditSink;
  intervalMs: number;
  timeoutMs: number;
  /** False while the peer cannot act (sealed): it re-quotes nobody. */
  canAct(): boolean;
  onCheck(r: { check: string; ok: boolean }): void;
  log(line: string): void;
  /** Why this peer answers no re-quote now (pending-reenrolment.ts), or null. */
  notAnswering?: () => string | null;
  /** Peers dialled at another address than their member address (config.json `peerDialOverrides`). */
  dialOverrides?: PeerDialOverrides;
}

export interface ContinuousAttestation {
  /** AttestationService for the peer's gRPC server; undefined without a TPM. */
  readonly service:
    { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } | undefined;
  /** Another peer refused one of this peer's calls (raft, re-quotes) with a structured refusal. */
  refusedBy(peerId: string, code: PeerRefusalCode, details: string): void;
  self(): SelfFenceState;
  /** Calls `listener` whenever this peer may have become fenced or unfenced (health follows at once). */
  onFenceChange(listener: () => void): void;
  start(): void;
  stop(): Promise<void>;
}

export function continuousAttestation(o: ContinuousAttestationOptions): ContinuousAttestation {
  const { control, peerId } = o;
  const self = new SelfFence({
    ownRecord: () => control.state.member(peerId),
    // Renewed by a refusal at least once per round (the follower's re-quote of the leader).
    noticeMs: 3 * o.intervalMs,
  });
  control.state.onChange((change) => {
    if (change.kind === "member" && change.member.id === peerId) self.ownRecordChanged(change.member.state);
  });
  const refusedBy = (by: string, code: PeerRefusalCode, details: string): void => {
    if (code === "fenced" && !self.state().fenced)
      o.log(`attestation: ${by} refuses this peer as fenced: ${details}`);
    self.refusedBy(by, code, details);
  };
  const channel = new GrpcRequoteChannel({
    tls: o.tls,
    addressOf: (id) => {
      const address = control.state.member(id)?.address;
      return address === undefined ? undefined : peerDialAddress(o.dialOverrides, id, address);
    },
    onRefused: refusedBy,
  });
  const scope = (): MonitorScope => {
    if (!o.canAct() || self.state().fenced) return { kind: "none" };
    const status = control.driver.status();
    if (status.role === "leader") return { kind: "every-member" };
    return status.leader !== null && status.leader !== peerId
      ? { kind: "leader", peerId: status.leader }
      : { kind: "none" };
  };
  const monitor = new AttestationMonitor({
    selfId: peerId,
    authority: o.authority,
    channel,
    audit: o.audit,
    intervalMs: o.intervalMs,
    timeoutMs: o.timeoutMs,
    scope,
    mayFence: (id) =>
      fenceQuorumRefusal(id, control.driver.status().confState.voters, (m) => control.state.member(m)),
    onCheck: o.onCheck,
    log: o.log,
  });
  const tpm = o.tpm;
  const service =
    tpm === undefined
      ? undefined
      : requoteService({
          useTpm: (fn) => tpm.use(fn),
          verifier: new PeerCertificateVerifier(o.tls.caCertificatePem),
          admitCaller: (peer) => control.peerRefusal(peer),
          ...(o.notAnswering !== undefined ? { notAnswering: o.notAnswering } : {}),
        });
  return {
    service,
    refusedBy,
    self: () => self.state(),
    onFenceChange: (listener) => self.onChange(listener),
    start: () => monitor.start(),
    async stop() {
      self.close();
      await monitor.stop();
      channel.close();
    },
  };
}

/** This peer's attestation as `lockbox status` shows it (admin GetStatus `attestation`). */
export function attestationStatus(
  own: { state: string; reason: string } | undefined,
  self: SelfFenceState,
): { memberState: string; fenced: boolean; reason: string } {
  if (self.fenced) return { memberState: own?.state ?? "", fenced: true, reason: self.reason };
  return { memberState: own?.state ?? "", fenced: false, reason: own?.reason ?? "" };
}
