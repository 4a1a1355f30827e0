/**
 * A JoinAuthority held in one process's memory: for tests and for a
 * single-machine trial only. The cluster's authority is the control state
 * (src/controlplane), replicated by raft; this one forgets everything on exit
 * and admits without consensus. Its behaviour is the contract the real one
 * keeps: admission is all or nothing and leaves the member joining until the
 * joiner confirms, a removed member stays removed, the join token is spent by
 * the admission.
 */
import { X509Certificate, randomBytes, randomUUID } from "node:crypto";
import type { QuoteClock } from "../../tpm/verify/quote-failure.js";
import type { QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { type CertifiedKey, issuePeerCertificateForKey } from "../pki/certificate-authority.js";
import {
  ConfirmStaleError,
  type Admission,
  type AdmitRequest,
  type CmkEpoch,
  type EnrolledMember,
  type JoinAuthority,
  type MemberState,
} from "./join-authority.js";

export interface InMemoryMemberRecord extends EnrolledMember {
  /** Why the member is fenced or down, for status. */
  readonly reason?: string;
  readonly akName?: Uint8Array;
  readonly certificatePem?: string;
}

export class InMemoryJoinAuthority implements JoinAuthority {
  readonly #members = new Map<string, InMemoryMemberRecord>();
  readonly #policies = new Map<string, QuotePolicy>();
  #cmk: CmkEpoch;
  /** Admissions so far, in order (tests look at them). */
  readonly admissions: AdmitRequest[] = [];
  /** Set to make admit() fail, as a control state without quorum would. */
  failAdmitWith: Error | undefined;

  constructor(
    private readonly ca: CertifiedKey,
    cmk: CmkEpoch = { epoch: 1, key: randomBytes(32) },
    private readonly clusterId: string = randomUUID(),
  ) {
    this.#cmk = { epoch: cmk.epoch, key: Buffer.from(cmk.key) };
  }

  enroll(member: EnrolledMember): void {
    this.#members.set(member.peerId, member);
  }

  setPolicy(name: string, policy: QuotePolicy): void {
    this.#policies.set(name, policy);
  }

  setState(peerId: string, state: MemberState, reason?: string): void {
    const m = this.#members.get(peerId);
    if (m === undefined) throw new Error(`no member ${peerId}`);
    this.#members.set(peerId, { ...m, state, ...(reason !== undefined ? { reason } : {}) });
  }

  record(peerId: string): InMemoryMemberRecord | undefined {
    return this.#members.get(peerId);
  }

  /** A copy of the current CMK (tests compare what the joiner got). */
  cmkForTest(): CmkEpoch {
    return { epoch: this.#cmk.epoch, key: Buffer.from(this.#cmk.key) };
  }

  async member(peerId: string): Promise<EnrolledMember | undefined> {
    return this.#members.get(peerId);
  }

  async members(): Promise<readonly EnrolledMember[]> {
    return [...this.#members.values()];
  }

  async policy(name: string): Promise<QuotePolicy | undefined> {
    return this.#policies.get(name);
  }

  async currentCmk(): Promise<CmkEpoch> {
    return this.cmkForTest();
  }

  async admit(request: AdmitRequest): Promise<Admission> {
    if (this.failAdmitWith !== undefined) throw this.failAdmitWith;
    const m = this.#members.get(request.peerId);
    if (m === undefined || m.state === "removed")
      throw new Error(`member ${request.peerId} cannot be admitted`);
    const certificatePem = await issuePeerCertificateForKey(this.ca, {
      peerId: request.peerId,
      publicKeySpki: request.tlsPublicKeySpki,
      ...(m.hostNames !== undefined ? { hostNames: m.hostNames } : {}),
    });
    const { joinTokenHash: _spent, reason: _reason, ...rest } = m;
    this.#members.set(request.peerId, {
      ...rest,
      state: "joining",
      lastQuoteClock: request.quoteClock,
      akName: request.akName,
      akPublic: request.akPublic,
      certificatePem,
    });
    this.admissions.push(request);
    return { clusterId: this.clusterId, certificatePem, caCertificatePem: this.ca.certificatePem };
  }

  async confirm(peerId: string, certificateSerial: string): Promise<void> {
    const m = this.#members.get(peerId);
    const serial =
      m?.certificatePem === undefined
        ? undefined
        : new X509Certificate(m.certificatePem).serialNumber.toUpperCase();
    if (m === undefined || serial !== certificateSerial || (m.state !== "joining" && m.state !== "active"))
      throw new ConfirmStaleError(`the admission of ${peerId} is no longer current`);
    this.#members.set(peerId, { ...m, state: "active" });
  }

  async fence(peerId: string, reason: string): Promise<void> {
    this.setState(peerId, "fenced", reason);
  }

  async markDown(peerId: string, reason: string): Promise<void> {
    const m = this.#members.get(peerId);
    if (m !== undefined && m.state !== "fenced" && m.state !== "removed")
      this.setState(peerId, "down", reason);
  }

  async attested(peerId: string, quoteClock: QuoteClock): Promise<void> {
    const m = this.#members.get(peerId);
    if (m === undefined || m.state === "fenced" || m.state === "removed") return;
    const { reason: _reason, ...rest } = m;
    // Several members re-quote each one: keep the latest clock, whichever verdict lands last.
    const last = m.lastQuoteClock;
    const later =
      last === undefined ||
      quoteClock.resetCount > last.resetCount ||
      (quoteClock.resetCount === last.resetCount && quoteClock.clock > last.clock);
    this.#members.set(peerId, { ...rest, state: "active", lastQuoteClock: later ? quoteClock : last });
  }

  async unfence(peerId: string, quoteClock: QuoteClock): Promise<void> {
    const m = this.#members.get(peerId);
    if (m?.state !== "fenced") return;
    const { reason: _reason, ...rest } = m;
    this.#members.set(peerId, { ...rest, state: "active", lastQuoteClock: quoteClock });
  }
}
