/**
 * What the join protocol needs from the cluster's control state, and nothing
 * more (src/controlplane implements it over raft; in-memory-join-authority.ts
 * for tests). The verifier reads an enrollment, a policy and the current CMK,
 * and asks to admit a peer only after every check passed; it never sees how
 * members are stored or replicated.
 */
import type { QuoteClock } from "../../tpm/verify/quote-failure.js";
import type { QuotePolicy } from "../../tpm/verify/quote-policy.js";

/** A member's place in the cluster's lifecycle. Only "removed" can never join again. */
export type MemberState = "enrolled" | "joining" | "active" | "fenced" | "leaving" | "down" | "removed";

/** The states from which a peer may (re-)attest: a fenced or restarted member attests again to return. */
export const JOINABLE_STATES: ReadonlySet<MemberState> = new Set([
  "enrolled",
  "joining",
  "active",
  "fenced",
  "down",
]);

export interface EnrolledMember {
  readonly peerId: string;
  readonly state: MemberState;
  /**
   * The EK as `lockbox peer enroll` recorded it: its public key as SPKI DER
   * (the EK public key the operator gave). The joiner's EK must be exactly
   * this key. Absent when enrolled by certificate only (ekCertificateDer).
   */
  readonly ekPublicKeySpki?: Uint8Array;
  /**
   * The EK certificate (DER) given at enrollment, if any: then the joiner's EK must be the key it
   * certifies (when no ekPublicKeySpki was enrolled) and it is the certificate checked; otherwise
   * the joiner's own certificate is checked.
   */
  readonly ekCertificateDer?: Uint8Array;
  /** Name of the PCR policy (JoinAuthority.policy) this member's quotes must meet. */
  readonly policyName: string;
  /**
   * joinTokenHash() of the one-time token `peer enroll` printed, while it is
   * unused; a join must prove knowledge of the token when this is set.
   */
  readonly joinTokenHash?: Uint8Array;
  /** When the join token stops being good (ms since the epoch); absent: it does not expire. */
  readonly joinTokenExpiresAtMs?: number;
  /** The TPM clock of this member's last accepted quote: an older or equal one is a replay. */
  readonly lastQuoteClock?: QuoteClock;
  /** The AK (TPMT_PUBLIC, marshalled) activated at the member's last admission; re-quotes are checked against it. */
  readonly akPublic?: Uint8Array;
  /** When the member's state last changed (ms since the epoch), if known. */
  readonly stateChangedAtMs?: number;
  /** Host names and addresses for the member's certificate (its enrolled address). */
  readonly hostNames?: readonly string[];
}

/** confirm() of an admission that is no longer current: the joiner must join again. */
export class ConfirmStaleError extends Error {
  override readonly name = "ConfirmStaleError";
  readonly code = "confirm-stale";
}

/** The cluster master key of one epoch, released by the barrier; the caller zeroes `key` after use. */
export interface CmkEpoch {
  readonly epoch: number;
  readonly key: Uint8Array;
}

export interface AdmitRequest {
  readonly peerId: string;
  /** The joiner's TLS public key (SPKI DER); its private key never leaves the joiner. */
  readonly tlsPublicKeySpki: Uint8Array;
  /** From the accepted quote: stored so the next quote from this TPM must be later. */
  readonly quoteClock: QuoteClock;
  /** The activated AK's name (nameAlg || digest): the key later re-quotes are checked against. */
  readonly akName: Uint8Array;
  readonly akPublic: Uint8Array;
}

export interface Admission {
  /** The cluster the peer joined (its sealed CMK file names it). */
  readonly clusterId: string;
  /** What the joiner needs for its config.json; absent from authorities that do not know it (tests). */
  readonly peerSetup?: PeerSetup;
  /** The peer's mTLS certificate, then the cluster CA (PEM). */
  readonly certificatePem: string;
  readonly caCertificatePem: string;
}

/** The cluster's facts a joined peer's config.json needs (src/cli/commands/join.ts writes it). */
export interface PeerSetup {
  /** HOST:PORT the member was enrolled with: where it is to listen. */
  readonly address: string;
  /** The ring parameters every peer must share. */
  readonly partitionPower: number;
  readonly clusterSalt: string;
  readonly replicationEnabled: boolean;
  /** Other members to dial before the control state names them: peer id -> HOST:PORT. */
  readonly seedPeers: Readonly<Record<string, string>>;
}

export interface JoinAuthority {
  /** The enrollment for `peerId`, or undefined when there is none. */
  member(peerId: string): Promise<EnrolledMember | undefined>;
  /** Every member (continuous attestation re-quotes the active and down ones). */
  members(): Promise<readonly EnrolledMember[]>;
  /** The PCR policy named `name`, or undefined. */
  policy(name: string): Promise<QuotePolicy | undefined>;
  /**
   * The current CMK epoch and its key, through the barrier. Throws (a
   * LockboxError, e.g. FAILED_PRECONDITION when sealed) when it cannot.
   */
  currentCmk(): Promise<CmkEpoch>;
  /**
   * Commits the admission's first step: issues the peer's certificate for its
   * TLS key, marks the member joining (not active: it has not got its key yet),
   * records the quote clock and AK, and consumes the join token. All or
   * nothing: on a throw nothing was admitted (the join is refused with
   * "admit-failed" and may be retried). A retried join replaces an admission
   * that was never confirmed.
   */
  admit(request: AdmitRequest): Promise<Admission>;
  /**
   * The admission's second step, once the joiner proved it holds the CMK: the
   * joining member whose current certificate has `certificateSerial` becomes
   * active. Idempotent. Throws ConfirmStaleError when that admission is no
   * longer current (undone after its timeout, or replaced by a later join);
   * anything else thrown is retryable.
   */
  confirm(peerId: string, certificateSerial: string): Promise<void>;
  /** Fences a member whose re-quote failed (continuous attestation); idempotent. */
  fence(peerId: string, reason: string): Promise<void>;
  /** Marks a member that did not answer a re-quote as down (not fenced); idempotent. */
  markDown(peerId: string, reason: string): Promise<void>;
  /** Records a passed re-quote: a down member is active again (a fenced one is not), and its clock moves on. */
  attested(peerId: string, quoteClock: QuoteClock): Promise<void>;
  /**
   * A fenced member's re-quote passed every check against its policy as it is now (an operator
   * approved its new state): it is active again, and its clock moves on. Idempotent.
   */
  unfence(peerId: string, quoteClock: QuoteClock): Promise<void>;
}
