/**
 * The verifying member's side of the attested join (DESIGN.md §5). Checks
 * run in the fixed order of JOIN_CHECKS; the first that fails ends the join
 * with a JoinRefusal, which is audited here and returned for the joiner's
 * operator. Only after every check passed does the verifier ask its
 * JoinAuthority to admit the peer, and only an admitted peer gets the CMK,
 * wrapped to the ephemeral key its quote signed. No refused join ever gets
 * a byte of the CMK: the CMK is not even read before the quote is accepted.
 *
 * Unauthenticated callers reach this code (the joiner has no certificate
 * yet): what it holds for them is bounded by join-sessions.ts, and refusals
 * that need no enrollment lookup (unknown or expired sessions, a full table)
 * are counted into aggregate audit records rather than written one each.
 */
import { X509Certificate, createHash, createPublicKey, randomBytes, timingSafeEqual } from "node:crypto";
import { isNodeId } from "../../cluster/node-id.js";
import { CredentialError, makeCredential } from "../../tpm/credential/make-credential.js";
import { EkCertificateError } from "../../tpm/ek/ek-certificate-error.js";
import { checkEkCertificateKey, verifyEkCertificateChain } from "../../tpm/ek/ek-certificate.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { decodeExact } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { objectName } from "../../tpm/spec/name.js";
import { TpmtPublic } from "../../tpm/spec/public.js";
import { quoteFailure } from "../../tpm/verify/quote-failure.js";
import type { QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { parseQuotePolicy } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import type { AuditEventInput, RefusalInput } from "../audit/audit-log.js";
import { type Clock, systemClock } from "../time/clock.js";
import { type KeyWrapError, ephemeralPublicKey, wrapCmkToJoiner } from "./ephemeral-key-wrap.js";
import {
  ConfirmStaleError,
  JOINABLE_STATES,
  type EnrolledMember,
  type JoinAuthority,
} from "./join-authority.js";
import { CONFIRM_PROOF_BYTES, checkJoinConfirmProof } from "./join-confirm.js";
import type {
  JoinActivation,
  JoinAdmitted,
  JoinChallenge,
  JoinConfirm,
  JoinConfirmed,
  JoinHello,
  JoinNonce,
  JoinQuote,
  JoinResult,
  JoinVerifierApi,
  QuotedPcr,
} from "./join-messages.js";
import { type JoinRefusal, describeJoinRefusal, joinRefusal, quoteRefusal } from "./join-refusal.js";
import {
  JoinSessions,
  type JoinSessionLimits,
  SESSION_ID_BYTES,
  joinSessionLimits,
} from "./join-sessions.js";
import { checkJoinTokenProof } from "./join-token.js";
import { quoteExtraData } from "./quote-binding.js";

/** The part of AuditLog the verifier writes to (src/audit's AuditLog has both). */
export interface JoinAuditSink {
  append(event: AuditEventInput): Promise<unknown>;
  countRefusal(refusal: RefusalInput): void;
}

export interface JoinVerifierOptions {
  readonly authority: JoinAuthority;
  /** Manufacturer CA certificates (roots and intermediates) EK certificates must chain to. */
  readonly manufacturerCas: readonly X509Certificate[];
  readonly audit: JoinAuditSink;
  readonly clock?: Clock;
  readonly limits?: Partial<JoinSessionLimits>;
  readonly log?: (line: string) => void;
  /**
   * TESTS ONLY: awaited after an admission committed and before it is answered, so a test can kill the
   * verifier exactly there (the joiner then never hears of an admission the cluster holds).
   */
  readonly afterAdmit?: (peerId: string) => Promise<void>;
}

/** The audit record's operation for every join step. */
export const JOIN_OPERATION = "Join";
const NONCE_BYTES = 32;
const CREDENTIAL_BYTES = 32;
/** Bounds on what a hostile joiner may send, far above what a TPM produces. */
const FIELD_BYTES_MAX = { ekPublic: 1024, akPublic: 1024, ekCertificate: 4096, tlsPublicKey: 512 } as const;

type Refused = { readonly ok: false; readonly refusal: JoinRefusal };

interface Session {
  readonly peerId: string;
  readonly source: string;
  readonly akPublic: TpmtPublic;
  readonly akName: Uint8Array;
  readonly credential: Uint8Array;
  readonly policy: QuotePolicy;
  readonly pcrs: readonly QuotedPcr[];
  step: "challenged" | "activated";
  nonce?: Uint8Array;
  nonceExpiresAt?: number;
}

export class JoinVerifier implements JoinVerifierApi {
  readonly #sessions: JoinSessions<Session>;
  readonly #limits: JoinSessionLimits;
  readonly #clock: Clock;

  constructor(private readonly options: JoinVerifierOptions) {
    this.#clock = options.clock ?? systemClock;
    this.#limits = joinSessionLimits(options.limits);
    this.#sessions = new JoinSessions(this.#limits, this.#clock);
  }

  /** Joins in progress (status and tests). */
  get sessionsInProgress(): number {
    return this.#sessions.size;
  }

  async begin(hello: JoinHello, source: string): Promise<JoinResult<JoinChallenge>> {
    if (!this.#sessions.admitStart()) {
      return this.#counted(source, joinRefusal("joins-busy", { limit: "startsPerSecondMax" }));
    }
    if (!isNodeId(hello.peerId)) {
      return this.#counted(
        source,
        joinRefusal("message-malformed", { field: "peer_id", problem: "not a peer id" }),
      );
    }
    const tooLong = (Object.keys(FIELD_BYTES_MAX) as (keyof typeof FIELD_BYTES_MAX)[]).find(
      (f) => f !== "tlsPublicKey" && hello[f].length > FIELD_BYTES_MAX[f],
    );
    if (tooLong !== undefined) {
      return this.#counted(source, joinRefusal("message-malformed", { field: tooLong, problem: "too long" }));
    }
    const peerId = hello.peerId;
    const refuse = (r: JoinRefusal) => this.#refused(peerId, source, r);

    // member
    const member = await this.options.authority.member(peerId);
    if (member === undefined) return refuse(joinRefusal("member-unknown", { peerId }));
    if (member.state === "removed") return refuse(joinRefusal("member-removed", { peerId }));
    if (!JOINABLE_STATES.has(member.state))
      return refuse(joinRefusal("member-state", { state: member.state }));

    // ek-enrollment
    let ekPublic: TpmtPublic;
    let ekSpki: Buffer;
    try {
      ekPublic = decodeExact(hello.ekPublic, "EK TPMT_PUBLIC", TpmtPublic.unmarshal);
      ekSpki = publicKeyFromTpmt(ekPublic).export({ type: "spki", format: "der" });
    } catch (err) {
      return refuse(joinRefusal("ek-malformed", { problem: errorText(err) }));
    }
    const enrolledEk = enrolledEkSpki(member);
    if (enrolledEk === undefined || !bytesEqual(ekSpki, enrolledEk)) {
      return refuse(
        joinRefusal("ek-not-enrolled", {
          peerId,
          enrolledEkSha256: enrolledEk === undefined ? "none" : sha256Hex(enrolledEk),
          presentedEkSha256: sha256Hex(ekSpki),
        }),
      );
    }

    // ek-certificate
    const certRefusal = this.#checkEkCertificate(member, hello.ekCertificate, ekPublic);
    if (certRefusal !== undefined) return refuse(certRefusal);

    // credential: wrap a fresh secret to the EK, bound to the claimed AK's name.
    let akPublic: TpmtPublic;
    let akName: Uint8Array;
    try {
      akPublic = decodeExact(hello.akPublic, "AK TPMT_PUBLIC", TpmtPublic.unmarshal);
      akName = objectName(akPublic);
    } catch (err) {
      return refuse(joinRefusal("ak-name-malformed", { problem: errorText(err) }));
    }
    const credential = randomBytes(CREDENTIAL_BYTES);
    let made: ReturnType<typeof makeCredential>;
    try {
      made = makeCredential({ ekPublic, akName, credential });
    } catch (err) {
      if (err instanceof CredentialError && err.code === "unsupported-ek") {
        return refuse(joinRefusal("ek-unsupported", { problem: err.message }));
      }
      return refuse(joinRefusal("ak-name-malformed", { problem: errorText(err) }));
    }

    // The policy is read now so that the nonce step can name the PCRs to quote.
    const policy = await this.options.authority.policy(member.policyName);
    if (policy === undefined) return refuse(joinRefusal("policy-unknown", { policy: member.policyName }));
    const parsed = parseQuotePolicy(policy);
    if ("problem" in parsed) {
      return refuse(
        quoteRefusal([quoteFailure(parsed.code, { field: parsed.field, problem: parsed.problem })]),
      );
    }
    const pcrs = parsed.pcrs.map((e) => ({ hashAlg: e.hashAlg, pcr: e.pcr }));

    const opened = this.#sessions.open({
      peerId,
      source,
      akPublic,
      akName,
      credential,
      policy,
      pcrs,
      step: "challenged",
    });
    if ("busy" in opened) return this.#counted(source, joinRefusal("joins-busy", { problem: opened.busy }));
    return {
      ok: true,
      value: {
        sessionId: opened.id,
        credentialBlob: encode((w) => made.credentialBlob.marshal(w)),
        encryptedSecret: made.secret,
      },
    };
  }

  async activate(activation: JoinActivation, source: string): Promise<JoinResult<JoinNonce>> {
    const found = this.#lookup(activation.sessionId, "get");
    if ("refusal" in found) return this.#counted(source, found.refusal);
    const session = found.session;
    const refuse = (r: JoinRefusal) => {
      this.#sessions.delete(activation.sessionId);
      return this.#refused(session.peerId, source, r);
    };
    if (session.step !== "challenged")
      return refuse(joinRefusal("step-out-of-order", { expected: "attest" }));

    // credential
    if (!bytesEqual(activation.credential, session.credential)) {
      return refuse(
        joinRefusal("credential-not-activated", {
          problem:
            activation.credential.length === 0
              ? "the joiner's TPM did not release the credential (its AK and EK are not in one TPM)"
              : "the released credential is not the one wrapped to the enrolled EK",
          tpmResponseCode: `0x${(activation.tpmResponseCode >>> 0).toString(16)}`,
        }),
      );
    }

    // join-token
    const member = await this.options.authority.member(session.peerId);
    if (member?.joinTokenHash !== undefined) {
      if (activation.joinTokenProof.length === 0) return refuse(joinRefusal("join-token-required"));
      const transcript = { sessionId: activation.sessionId, peerId: session.peerId, akName: session.akName };
      if (!checkJoinTokenProof(member.joinTokenHash, transcript, activation.joinTokenProof)) {
        return refuse(joinRefusal("join-token-invalid"));
      }
      const expires = member.joinTokenExpiresAtMs;
      if (expires !== undefined && this.#clock.now().getTime() > expires) {
        return refuse(joinRefusal("join-token-expired", { expiredAt: new Date(expires).toISOString() }));
      }
    }

    const nonce = randomBytes(NONCE_BYTES);
    session.step = "activated";
    session.nonce = nonce;
    session.nonceExpiresAt = this.#clock.now().getTime() + this.#limits.nonceTtlMs;
    return { ok: true, value: { nonce, expiresInMs: this.#limits.nonceTtlMs, pcrs: session.pcrs } };
  }

  async attest(q: JoinQuote, source: string): Promise<JoinResult<JoinAdmitted>> {
    // Taken out of the table whatever happens next: the nonce is answered once.
    const found = this.#lookup(q.sessionId, "take");
    if ("refusal" in found) return this.#counted(source, found.refusal);
    const session = found.session;
    const peerId = session.peerId;
    const refuse = (r: JoinRefusal) => this.#refused(peerId, source, r);
    if (session.step !== "activated" || session.nonce === undefined || session.nonceExpiresAt === undefined) {
      return refuse(joinRefusal("step-out-of-order", { expected: "activate" }));
    }
    let tlsKeyOk = q.tlsPublicKey.length <= FIELD_BYTES_MAX.tlsPublicKey;
    try {
      const key = createPublicKey({ key: Buffer.from(q.tlsPublicKey), format: "der", type: "spki" });
      tlsKeyOk &&= key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
    } catch {
      tlsKeyOk = false;
    }
    if (!tlsKeyOk) {
      return refuse(
        joinRefusal("message-malformed", { field: "tls_public_key", problem: "not a P-256 SPKI key" }),
      );
    }
    try {
      ephemeralPublicKey(q.ephemeralPublicKey);
    } catch (err) {
      return refuse(
        joinRefusal("message-malformed", {
          field: "ephemeral_public_key",
          problem: (err as KeyWrapError).message,
        }),
      );
    }

    // nonce-fresh
    const now = this.#clock.now().getTime();
    if (now > session.nonceExpiresAt) {
      return refuse(
        joinRefusal("nonce-expired", {
          lateMs: now - session.nonceExpiresAt,
          nonceTtlMs: this.#limits.nonceTtlMs,
        }),
      );
    }

    // The member may have been removed (or its policy changed) while the join ran.
    const member = await this.options.authority.member(peerId);
    if (member === undefined) return refuse(joinRefusal("member-unknown", { peerId }));
    if (member.state === "removed") return refuse(joinRefusal("member-removed", { peerId }));

    // The quote's checks, in QUOTE_CHECKS order (tpm/verify).
    const verdict = verifyQuote({
      attestBytes: q.attest,
      signature: q.signature,
      akPublic: session.akPublic,
      expectedNonce: quoteExtraData(session.nonce, q.ephemeralPublicKey),
      pcrValues: q.pcrValues,
      policy: session.policy,
      ...(member.lastQuoteClock !== undefined ? { previous: member.lastQuoteClock } : {}),
    });
    if (!verdict.ok) return refuse(quoteRefusal(verdict.failures));

    // admit: only now is the CMK read, and only an admitted peer gets it.
    let admitted: JoinAdmitted;
    try {
      const cmk = await this.options.authority.currentCmk();
      try {
        const admission = await this.options.authority.admit({
          peerId,
          tlsPublicKeySpki: q.tlsPublicKey,
          quoteClock: {
            clock: verdict.clock.clock,
            resetCount: verdict.clock.resetCount,
            restartCount: verdict.clock.restartCount,
          },
          akName: verdict.akName,
          akPublic: encode((w) => session.akPublic.marshal(w)),
        });
        admitted = {
          clusterId: admission.clusterId,
          certificatePem: admission.certificatePem,
          caCertificatePem: admission.caCertificatePem,
          ...(admission.peerSetup !== undefined ? { peerSetup: admission.peerSetup } : {}),
          wrappedCmk: wrapCmkToJoiner({
            cmk: cmk.key,
            epoch: cmk.epoch,
            peerId,
            nonce: session.nonce,
            joinerPublicKey: q.ephemeralPublicKey,
          }),
        };
      } finally {
        cmk.key.fill(0);
      }
    } catch (err) {
      return refuse(joinRefusal("admit-failed", { problem: errorCode(err) }));
    }
    await this.options.afterAdmit?.(peerId);
    await this.#audit({
      identity: "",
      operation: JOIN_OPERATION,
      outcome: "ok",
      status: "OK",
      detail: `peer ${peerId} attested and admitted as joining (CMK epoch ${admitted.wrappedCmk.epoch}); waiting for its confirmation`,
      source,
    });
    return { ok: true, value: admitted };
  }

  /**
   * The join's second step, on any member: the joiner sealed the CMK and proves it holds it for the
   * admission that issued its certificate; the member becomes active (the proposal goes to the leader
   * wherever it is). A joiner whose verifier died after admitting it confirms here through another member.
   */
  async confirm(c: JoinConfirm, source: string): Promise<JoinResult<JoinConfirmed>> {
    if (!this.#sessions.admitStart()) {
      return this.#counted(source, joinRefusal("joins-busy", { limit: "startsPerSecondMax" }));
    }
    if (!isNodeId(c.peerId)) {
      return this.#counted(
        source,
        joinRefusal("message-malformed", { field: "peer_id", problem: "not a peer id" }),
      );
    }
    if (!/^[0-9A-F]{1,64}$/.test(c.certificateSerial) || c.proof.length !== CONFIRM_PROOF_BYTES) {
      return this.#counted(
        source,
        joinRefusal("message-malformed", { field: "confirm", problem: "bad serial or proof length" }),
      );
    }
    const peerId = c.peerId;
    const refuse = (r: JoinRefusal) => this.#refused(peerId, source, r);
    const member = await this.options.authority.member(peerId);
    if (member === undefined) return refuse(joinRefusal("member-unknown", { peerId }));
    if (member.state === "removed") return refuse(joinRefusal("member-removed", { peerId }));
    let proofOk: boolean;
    try {
      const cmk = await this.options.authority.currentCmk();
      try {
        if (cmk.epoch !== c.epoch) {
          return refuse(
            joinRefusal("confirm-epoch-changed", { admittedEpoch: c.epoch, activeEpoch: cmk.epoch }),
          );
        }
        proofOk = checkJoinConfirmProof(cmk.key, peerId, c.certificateSerial, c.proof);
      } finally {
        cmk.key.fill(0);
      }
    } catch (err) {
      return refuse(joinRefusal("confirm-failed", { problem: errorCode(err) }));
    }
    if (!proofOk) return refuse(joinRefusal("confirm-proof-invalid"));
    try {
      await this.options.authority.confirm(peerId, c.certificateSerial);
    } catch (err) {
      if (err instanceof ConfirmStaleError) {
        return refuse(joinRefusal("confirm-stale", { problem: err.message.slice(0, 200) }));
      }
      return refuse(joinRefusal("confirm-failed", { problem: errorCode(err) }));
    }
    await this.#audit({
      identity: "",
      operation: JOIN_OPERATION,
      outcome: "ok",
      status: "OK",
      detail: `peer ${peerId} confirmed it sealed the master key: active (certificate ${c.certificateSerial})`,
      source,
    });
    return { ok: true, value: { peerId } };
  }

  #checkEkCertificate(
    member: EnrolledMember,
    presented: Uint8Array,
    ekPublic: TpmtPublic,
  ): JoinRefusal | undefined {
    const der = member.ekCertificateDer ?? (presented.length > 0 ? presented : undefined);
    if (der === undefined) return joinRefusal("ek-certificate-missing");
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(Buffer.from(der));
    } catch {
      return joinRefusal("ek-certificate-malformed", { problem: "not a DER X.509 certificate" });
    }
    try {
      checkEkCertificateKey(cert, ekPublic);
    } catch (err) {
      return joinRefusal("ek-certificate-key-mismatch", { problem: errorText(err) });
    }
    try {
      verifyEkCertificateChain(cert, this.options.manufacturerCas, { now: this.#clock.now() });
    } catch (err) {
      if (err instanceof EkCertificateError) {
        return joinRefusal("ek-certificate-untrusted", { reason: err.code, issuer: cert.issuer });
      }
      return joinRefusal("ek-certificate-untrusted", { reason: "check-error" });
    }
    return undefined;
  }

  #lookup(id: Uint8Array, how: "get" | "take"): { session: Session } | { refusal: JoinRefusal } {
    if (id.length !== SESSION_ID_BYTES) {
      return { refusal: joinRefusal("message-malformed", { field: "session_id", problem: "wrong length" }) };
    }
    const found = how === "get" ? this.#sessions.get(id) : this.#sessions.take(id);
    return found.found ? { session: found.session } : { refusal: joinRefusal(found.why) };
  }

  /** A refusal of an attempt that named an enrolled-or-not peer: one audit record each (starts are rate-bounded). */
  async #refused(peerId: string, source: string, refusal: JoinRefusal): Promise<Refused> {
    await this.#audit({
      identity: "",
      operation: JOIN_OPERATION,
      outcome: "denied",
      status: "PERMISSION_DENIED",
      detail: `peer ${peerId} (claimed) refused: ${describeJoinRefusal(refusal)}`,
      source,
    });
    return { ok: false, refusal };
  }

  /** A refusal before any session or enrollment was involved: counted into aggregate audit records. */
  #counted(source: string, refusal: JoinRefusal): Refused {
    this.options.audit.countRefusal({
      source,
      operation: JOIN_OPERATION,
      status: refusal.code === "joins-busy" ? "RESOURCE_EXHAUSTED" : "UNAUTHENTICATED",
      reason: `${refusal.check}/${refusal.code}`,
    });
    return { ok: false, refusal };
  }

  async #audit(event: AuditEventInput): Promise<void> {
    try {
      await this.options.audit.append(event);
    } catch (err) {
      // The join's answer does not wait on a broken audit store, but the operator hears of it.
      (this.options.log ?? ((l) => process.stderr.write(l + "\n")))(
        `join: audit write failed (${errorCode(err)}): ${event.detail ?? ""}`,
      );
    }
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The EK key the member was enrolled with: its public key, else the key its enrolled certificate certifies. */
function enrolledEkSpki(member: EnrolledMember): Uint8Array | undefined {
  if (member.ekPublicKeySpki !== undefined && member.ekPublicKeySpki.length > 0)
    return member.ekPublicKeySpki;
  if (member.ekCertificateDer === undefined) return undefined;
  try {
    return new X509Certificate(Buffer.from(member.ekCertificateDer)).publicKey.export({
      type: "spki",
      format: "der",
    });
  } catch {
    return undefined;
  }
}

function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Messages of our own decoders name the field; anything else by class only. */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : "error";
}

function errorCode(err: unknown): string {
  if (
    typeof err === "object" &&
    err !== null &&
    "code" in err &&
    typeof (err as { code: unknown }).code === "string"
  ) {
    return (err as { code: string }).code;
  }
  return err instanceof Error ? err.name : "error";
}
