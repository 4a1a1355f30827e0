/**
 * The attested join's JoinAuthority (src/attestation/join-authority.ts) over the replicated control
 * state: enrollments and policies are read after a ReadIndex barrier, the CMK comes from this peer's
 * barrier, and an admission is two raft entries: member.admit (joining, certificate serial, AK, quote
 * clock, join token spent — all or nothing), then member.confirm once the joiner proved it holds the
 * CMK (active). The peer certificate is signed with the cluster CA key the control state holds wrapped
 * under the CMK, for the joiner's own TLS key. The leader's autopilot then adds the active member to
 * raft as a learner (membership-autopilot.ts); a joining member that never confirms is undone
 * (leader-duties.ts).
 */
import {
  ConfirmStaleError,
  type Admission,
  type AdmitRequest,
  type CmkEpoch,
  type EnrolledMember,
  type JoinAuthority,
  type PeerSetup,
} from "../attestation/join-authority.js";
import type { Barrier } from "../crypto/barrier.js";
import { LockboxError } from "../errors.js";
import { issuePeerCertificateForKey } from "../pki/certificate-authority.js";
import { parseHostPort } from "../net/host-port.js";
import { PEER_ADDRESSES_MAX } from "../net/peer-addresses.js";
import type { Clock } from "../time/clock.js";
import type { QuoteClock } from "../../tpm/verify/quote-failure.js";
import type { QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { X509Certificate } from "node:crypto";
import { clusterCaFrom } from "./cluster-ca-key.js";
import type { MemberRecord, QuoteClockRecord } from "./control-records.js";
import type { ControlPlane } from "./control-plane.js";

export class ControlJoinAuthority implements JoinAuthority {
  constructor(
    private readonly control: ControlPlane,
    private readonly barrier: Barrier,
    private readonly clock: Clock,
    private readonly clusterId: string,
    /** This peer's ring parameters, handed to joiners for their config (absent: none handed). */
    private readonly ring?: Omit<PeerSetup, "address" | "seedPeers">,
  ) {}

  async member(peerId: string): Promise<EnrolledMember | undefined> {
    const m = (await this.control.readCurrent()).member(peerId);
    return m === undefined ? undefined : enrolled(m);
  }

  async members(): Promise<readonly EnrolledMember[]> {
    return (await this.control.readCurrent()).members().map(enrolled);
  }

  async policy(name: string): Promise<QuotePolicy | undefined> {
    return (await this.control.readCurrent()).policy(name)?.policy;
  }

  currentCmk(): Promise<CmkEpoch> {
    return Promise.resolve(this.barrier.releaseActiveKey());
  }

  async admit(request: AdmitRequest): Promise<Admission> {
    const state = await this.control.readCurrent();
    const m = state.member(request.peerId);
    if (m === undefined) throw new LockboxError("NOT_FOUND", `no member ${request.peerId}`);
    const host = parseHostPort(m.address)?.host;
    const certificatePem = await issuePeerCertificateForKey(clusterCaFrom(state, this.barrier), {
      peerId: request.peerId,
      publicKeySpki: request.tlsPublicKeySpki,
      ...(host !== undefined ? { hostNames: [host] } : {}),
      now: this.clock.now(),
    });
    await this.control.proposeOrThrow({
      type: "member.admit",
      id: request.peerId,
      from: m.state,
      certificateSerial: new X509Certificate(certificatePem).serialNumber.toUpperCase(),
      akPublic: Buffer.from(request.akPublic).toString("base64"),
      quoteClock: clockRecord(request.quoteClock),
      atMs: this.clock.now().getTime(),
    });
    const seedPeers = seedPeersFor(state.members(), m.id, this.control.driver.status().confState.voters);
    return {
      clusterId: this.clusterId,
      certificatePem,
      caCertificatePem: state.clusterCa()!.certificatePem,
      ...(this.ring !== undefined ? { peerSetup: { ...this.ring, address: m.address, seedPeers } } : {}),
    };
  }

  async confirm(peerId: string, certificateSerial: string): Promise<void> {
    const m = (await this.control.readCurrent()).member(peerId);
    if (m?.state === "active" && m.certificateSerial === certificateSerial) return;
    if (m?.state !== "joining" || m.certificateSerial !== certificateSerial) {
      throw new ConfirmStaleError(
        `the admission of ${peerId} is no longer current (member ${m?.state ?? "unknown"}): join again`,
      );
    }
    const { result } = await this.control.propose({
      type: "member.confirm",
      id: peerId,
      certificateSerial,
      atMs: this.clock.now().getTime(),
    });
    if (!result.ok) {
      // Between the read and the commit the admission was undone or replaced: nothing to retry.
      if (result.code === "conflict" || result.code === "failed-precondition")
        throw new ConfirmStaleError(result.reason);
      throw refusal(result.reason);
    }
  }

  async fence(peerId: string, reason: string): Promise<void> {
    const m = (await this.control.readCurrent()).member(peerId);
    if (m === undefined || m.state === "fenced" || m.state === "removed") return;
    await this.#transition(m, "fenced", reason);
  }

  async markDown(peerId: string, reason: string): Promise<void> {
    const m = (await this.control.readCurrent()).member(peerId);
    if (m?.state !== "active") return;
    await this.#transition(m, "down", reason);
  }

  async attested(peerId: string, quoteClock: QuoteClock): Promise<void> {
    await this.control.proposeOrThrow({
      type: "member.attested",
      id: peerId,
      quoteClock: clockRecord(quoteClock),
      atMs: this.clock.now().getTime(),
    });
  }

  async unfence(peerId: string, quoteClock: QuoteClock): Promise<void> {
    const m = (await this.control.readCurrent()).member(peerId);
    if (m?.state !== "fenced") return;
    // Two entries: active again (the transition a fenced member may make), then the clock moves on.
    await this.#transition(m, "active", "attested again: a re-quote passed its policy");
    await this.attested(peerId, quoteClock);
  }

  async #transition(m: MemberRecord, to: MemberRecord["state"], reason: string): Promise<void> {
    await this.control.proposeOrThrow({
      type: "member.transition",
      id: m.id,
      from: m.state,
      to,
      reason: reason.replace(/[^\x20-\x7e]/g, "?").slice(0, 256),
      certificateSerial: "",
      atMs: this.clock.now().getTime(),
    });
  }
}

/**
 * The joiner's seedPeers: the members that serve (active, down, leaving), raft voters first, at most
 * PEER_ADDRESSES_MAX of them, because the joiner's config.json refuses more (validatePeerConfig) and a
 * join in a larger cluster would otherwise fail after its admission committed. Voters first: they are
 * the members that hold the control state a restarted joiner reads first.
 */
export function seedPeersFor(
  members: readonly MemberRecord[],
  selfId: string,
  voters: readonly string[],
): Record<string, string> {
  const serving = members.filter(
    (x) => x.id !== selfId && (x.state === "active" || x.state === "down" || x.state === "leaving"),
  );
  const voter = new Set(voters);
  const ordered = [...serving.filter((x) => voter.has(x.id)), ...serving.filter((x) => !voter.has(x.id))];
  const seedPeers: Record<string, string> = {};
  for (const x of ordered.slice(0, PEER_ADDRESSES_MAX)) seedPeers[x.id] = x.address;
  return seedPeers;
}

function refusal(reason: string): LockboxError {
  return new LockboxError("UNAVAILABLE", reason);
}

function enrolled(m: MemberRecord): EnrolledMember {
  const host = parseHostPort(m.address)?.host;
  return {
    peerId: m.id,
    state: m.state,
    policyName: m.policy,
    ...(m.ekPublicKey !== ""
      ? { ekPublicKeySpki: new Uint8Array(Buffer.from(m.ekPublicKey, "base64")) }
      : {}),
    ...(m.ekCertificate !== ""
      ? { ekCertificateDer: new Uint8Array(Buffer.from(m.ekCertificate, "base64")) }
      : {}),
    ...(m.joinTokenSha256 !== ""
      ? {
          joinTokenHash: new Uint8Array(Buffer.from(m.joinTokenSha256, "hex")),
          joinTokenExpiresAtMs: m.joinTokenExpiresAtMs,
        }
      : {}),
    ...(m.lastQuoteClock !== null
      ? {
          lastQuoteClock: {
            clock: BigInt(m.lastQuoteClock.clock),
            resetCount: m.lastQuoteClock.resetCount,
            restartCount: m.lastQuoteClock.restartCount,
          },
        }
      : {}),
    ...(m.akPublic !== "" ? { akPublic: new Uint8Array(Buffer.from(m.akPublic, "base64")) } : {}),
    stateChangedAtMs: m.stateChangedAtMs,
    ...(host !== undefined ? { hostNames: [host] } : {}),
  };
}

function clockRecord(c: QuoteClock): QuoteClockRecord {
  return { clock: c.clock.toString(), resetCount: c.resetCount, restartCount: c.restartCount };
}
