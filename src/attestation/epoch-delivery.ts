/**
 * How a CMK epoch reaches a member after the join (DESIGN.md §5 "Rotation"): by attestation, exactly as
 * the join delivers the first one, never through the raft log.
 *
 * Why not wrap the new CMK under the old one in the log: then anyone who ever held (or recovered, or
 * stole) an old epoch could open every later one from the log, and a member whose platform changed
 * since its last quote would receive the new key without proving anything. Delivered this way, each
 * epoch goes only to a member that proves, at that moment, with the AK activated at its join, that its
 * PCRs meet its policy; and it is wrapped to a one-use key that member's quote signed.
 *
 *   fetcher                                       holder (a member that holds the epoch)
 *   begin(epoch)                       ------>    member active/down/leaving, AK known, epoch held?
 *                                      <------    session id, fresh nonce, the policy's PCRs
 *   quote(PCRs, H(nonce || eph. key))  ------>    verifyQuote(AK, nonce binding, policy) in fixed order
 *                                      <------    the epoch's CMK wrapped to the ephemeral key
 *
 * The fetcher seals what it received to its own TPM (cmk-epoch-keeper.ts) and reports holding it.
 * Sessions are few, short and single use; a refusal is a JoinRefusal naming the failed check.
 */
import { randomBytes } from "node:crypto";
import { withTransient } from "../../tpm/client/scoped.js";
import type { Tpm } from "../../tpm/client/tpm.js";
import { createAk } from "../../tpm/keys/ak.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import { parseQuotePolicy, type QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { LockboxError } from "../errors.js";
import {
  KeyWrapError,
  generateEphemeralKeyPair,
  unwrapCmkFromVerifier,
  wrapCmkToJoiner,
  type WrappedCmk,
} from "./ephemeral-key-wrap.js";
import type { CmkEpoch, EnrolledMember, MemberState } from "./join-authority.js";
import type { JoinNonce, JoinResult, QuotedPcr } from "./join-messages.js";
import { type JoinRefusal, describeJoinRefusal, joinRefusal, quoteRefusal } from "./join-refusal.js";
import type { JoinAuditSink } from "./join-verifier.js";
import { selection } from "./joiner.js";
import { quoteExtraData } from "./quote-binding.js";
import { restoreClockSafe } from "./restore-clock-safe.js";

/** States of a member that may fetch an epoch: one that serves, or may serve again after a restart. */
export const FETCHING_STATES: ReadonlySet<MemberState> = new Set(["active", "down", "leaving"]);

const NONCE_BYTES = 32;
const SESSION_ID_BYTES = 16;
export const EPOCH_FETCH_SESSIONS_MAX = 16;
export const EPOCH_FETCH_SESSION_TTL_MS = 30_000;

/** What the holder needs from the control state and its barrier. */
export interface EpochSource {
  /** The current member record of `peerId` (after a ReadIndex), or undefined. */
  member(peerId: string): Promise<EnrolledMember | undefined>;
  policy(name: string): Promise<QuotePolicy | undefined>;
  /** A copy of the epoch's key (the caller zeroes it), or undefined when it is not held or retired. */
  releaseEpoch(epoch: number): Promise<CmkEpoch | undefined>;
}

/** The fetcher's quote, answering one session's nonce. */
export interface EpochFetchQuote {
  readonly sessionId: Uint8Array;
  readonly attest: Uint8Array;
  readonly signature: Uint8Array;
  readonly pcrValues: readonly PcrValue[];
  readonly ephemeralPublicKey: Uint8Array;
}

export interface EpochFetchStart {
  readonly sessionId: Uint8Array;
  readonly nonce: JoinNonce;
}

interface Session {
  readonly peerId: string;
  readonly epoch: number;
  readonly nonce: Uint8Array;
  readonly expiresAtMs: number;
}

/** The holder's side. */
export interface EpochDelivererOptions {
  /**
   * Where deliveries and quote refusals are audited (one record each: only members get this far), and
   * the other refusals counted into aggregate records (operation "FetchEpoch").
   */
  readonly audit?: JoinAuditSink;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

const OPERATION = "FetchEpoch";

export class EpochDeliverer {
  readonly #sessions = new Map<string, Session>();
  readonly now: () => number;

  constructor(
    private readonly source: EpochSource,
    private readonly options: EpochDelivererOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Step 1 for `peerId` (the caller's certificate, already verified): a nonce, if it may fetch `epoch`.
   * Throws LockboxError NOT_FOUND when this member does not hold the epoch (ask another holder).
   */
  async begin(peerId: string, epoch: number): Promise<JoinResult<EpochFetchStart>> {
    const member = await this.source.member(peerId);
    const refusal = memberRefusal(peerId, member);
    if (refusal !== undefined) return this.#counted(peerId, refusal);
    const policy = await this.source.policy(member!.policyName);
    const parsed = policy === undefined ? undefined : parseQuotePolicy(policy);
    if (parsed === undefined || "problem" in parsed) {
      return this.#counted(peerId, joinRefusal("policy-unknown", { policy: member!.policyName }));
    }
    const key = await this.source.releaseEpoch(epoch);
    if (key === undefined)
      throw new LockboxError("NOT_FOUND", `this member does not hold CMK epoch ${epoch}`);
    key.key.fill(0);
    this.#expire();
    if (this.#sessions.size >= EPOCH_FETCH_SESSIONS_MAX) {
      return this.#counted(peerId, joinRefusal("joins-busy", { sessions: this.#sessions.size }));
    }
    const sessionId = randomBytes(SESSION_ID_BYTES);
    const nonce = randomBytes(NONCE_BYTES);
    this.#sessions.set(sessionId.toString("hex"), {
      peerId,
      epoch,
      nonce,
      expiresAtMs: this.now() + EPOCH_FETCH_SESSION_TTL_MS,
    });
    const pcrs: QuotedPcr[] = parsed.pcrs.map((e) => ({ hashAlg: e.hashAlg, pcr: e.pcr }));
    return {
      ok: true,
      value: { sessionId, nonce: { nonce, expiresInMs: EPOCH_FETCH_SESSION_TTL_MS, pcrs } },
    };
  }

  /** Step 2: checks the quote; only if every check passes, the epoch's CMK wrapped to the quoted key. */
  async fetch(peerId: string, q: EpochFetchQuote): Promise<JoinResult<WrappedCmk>> {
    const id = Buffer.from(q.sessionId).toString("hex");
    const session = this.#sessions.get(id);
    // Single use: a session is gone after its first answer, whatever the answer.
    this.#sessions.delete(id);
    if (session === undefined || session.peerId !== peerId) {
      return this.#counted(peerId, joinRefusal("session-unknown"));
    }
    if (this.now() > session.expiresAtMs) return this.#counted(peerId, joinRefusal("nonce-expired"));
    // The member is read again: it may have been fenced or removed since step 1.
    const member = await this.source.member(peerId);
    const refusal = memberRefusal(peerId, member);
    if (refusal !== undefined) return this.#refused(peerId, session.epoch, refusal);
    const policy = await this.source.policy(member!.policyName);
    if (policy === undefined) {
      return this.#refused(
        peerId,
        session.epoch,
        joinRefusal("policy-unknown", { policy: member!.policyName }),
      );
    }
    if (q.ephemeralPublicKey.length !== 65) {
      return this.#refused(
        peerId,
        session.epoch,
        joinRefusal("message-malformed", { field: "ephemeral_public_key", problem: "not 65 bytes" }),
      );
    }
    const verdict = verifyQuote({
      attestBytes: q.attest,
      signature: q.signature,
      akPublic: member!.akPublic!,
      expectedNonce: quoteExtraData(session.nonce, q.ephemeralPublicKey),
      pcrValues: q.pcrValues,
      policy,
    });
    if (!verdict.ok) return this.#refused(peerId, session.epoch, quoteRefusal(verdict.failures));
    const key = await this.source.releaseEpoch(session.epoch);
    if (key === undefined) {
      throw new LockboxError("NOT_FOUND", `this member no longer holds CMK epoch ${session.epoch}`);
    }
    let wrapped: WrappedCmk;
    try {
      wrapped = wrapCmkToJoiner({
        cmk: key.key,
        epoch: key.epoch,
        peerId,
        nonce: session.nonce,
        joinerPublicKey: q.ephemeralPublicKey,
      });
    } catch (e) {
      if (e instanceof KeyWrapError) {
        return this.#refused(
          peerId,
          session.epoch,
          joinRefusal("message-malformed", { field: "ephemeral_public_key", problem: e.message }),
        );
      }
      throw e;
    } finally {
      key.key.fill(0);
    }
    await this.#audit({
      identity: peerId,
      operation: OPERATION,
      outcome: "ok",
      status: "OK",
      detail: `CMK epoch ${session.epoch} delivered to peer ${peerId} after its quote passed every check`,
    });
    return { ok: true, value: wrapped };
  }

  /** A refusal of a member's quote (or of the member itself at that point): one audit record. */
  async #refused(peerId: string, epoch: number, refusal: JoinRefusal): Promise<JoinResult<never>> {
    await this.#audit({
      identity: peerId,
      operation: OPERATION,
      outcome: "denied",
      status: "PERMISSION_DENIED",
      detail: `peer ${peerId} refused CMK epoch ${epoch}: ${describeJoinRefusal(refusal)}`,
    });
    return { ok: false, refusal };
  }

  /** A refusal before a quote was checked: counted into aggregate audit records. */
  #counted(peerId: string, refusal: JoinRefusal): JoinResult<never> {
    this.options.audit?.countRefusal({
      source: peerId,
      operation: OPERATION,
      status: refusal.code === "joins-busy" ? "RESOURCE_EXHAUSTED" : "PERMISSION_DENIED",
      reason: `${refusal.check}/${refusal.code}`,
    });
    return { ok: false, refusal };
  }

  async #audit(event: Parameters<JoinAuditSink["append"]>[0]): Promise<void> {
    try {
      await this.options.audit?.append(event);
    } catch (err) {
      // The answer does not wait on a broken audit store, but the operator hears of it.
      (this.options.log ?? ((l) => process.stderr.write(l + "\n")))(
        `epoch delivery: audit write failed (${err instanceof Error ? err.name : "error"}): ${event.detail ?? ""}`,
      );
    }
  }

  #expire(): void {
    const now = this.now();
    for (const [id, s] of this.#sessions) if (now > s.expiresAtMs) this.#sessions.delete(id);
  }
}

function memberRefusal(peerId: string, m: EnrolledMember | undefined): JoinRefusal | undefined {
  if (m === undefined) return joinRefusal("member-unknown", { peer: peerId });
  if (m.state === "removed") return joinRefusal("member-removed", { peer: peerId });
  if (!FETCHING_STATES.has(m.state)) return joinRefusal("member-state", { peer: peerId, state: m.state });
  if (m.akPublic === undefined) {
    // A member added without attestation has no AK to quote with: it cannot prove anything.
    return joinRefusal("member-state", { peer: peerId, problem: "no AK activated by an attested join" });
  }
  return undefined;
}

/** How the fetcher reaches a holder (gRPC over mTLS in a peer: epoch-delivery-grpc.ts). */
export interface EpochFetchChannel {
  begin(holderId: string, epoch: number): Promise<JoinResult<EpochFetchStart>>;
  fetch(holderId: string, q: EpochFetchQuote): Promise<JoinResult<WrappedCmk>>;
}

export class EpochFetchRefused extends Error {
  override readonly name = "EpochFetchRefused";
  readonly code = "epoch-fetch-refused";
  constructor(readonly refusal: JoinRefusal) {
    super(`the holder refused the epoch fetch: ${refusal.check}/${refusal.code}`);
  }
}

/**
 * The fetcher's side: fetches `epoch` from `holderId` with this peer's TPM. Returns the key (the caller
 * seals it and zeroes it); throws EpochFetchRefused with the holder's refusal, or the channel's error.
 */
export async function fetchEpoch(p: {
  useTpm: <T>(fn: (tpm: Tpm) => Promise<T>) => Promise<T>;
  selfId: string;
  holderId: string;
  epoch: number;
  channel: EpochFetchChannel;
}): Promise<CmkEpoch> {
  const start = await p.channel.begin(p.holderId, p.epoch);
  if (!start.ok) throw new EpochFetchRefused(start.refusal);
  const { sessionId, nonce } = start.value;
  const ephemeral = generateEphemeralKeyPair();
  const quoted = await p.useTpm((tpm) =>
    tpm.exclusive(() =>
      withTransient(
        tpm,
        () => createAk(tpm),
        async (ak) => {
          const pcrs = selection(nonce.pcrs);
          await restoreClockSafe(tpm);
          const q = await quote(tpm, ak, {
            pcrs,
            extraData: quoteExtraData(nonce.nonce, ephemeral.publicKey),
          });
          const read = await tpm.pcrRead(pcrs);
          return {
            attest: q.attestBytes,
            signature: encode((w) => q.signature.marshal(w)),
            pcrValues: read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest })),
          };
        },
      ),
    ),
  );
  const answer = await p.channel.fetch(p.holderId, {
    sessionId,
    ...quoted,
    ephemeralPublicKey: ephemeral.publicKey,
  });
  if (!answer.ok) throw new EpochFetchRefused(answer.refusal);
  if (answer.value.epoch !== p.epoch) {
    throw new LockboxError("INTERNAL", `asked for CMK epoch ${p.epoch}, received ${answer.value.epoch}`);
  }
  const key = unwrapCmkFromVerifier({
    wrapped: answer.value,
    peerId: p.selfId,
    nonce: nonce.nonce,
    ephemeral,
  });
  return { epoch: p.epoch, key: new Uint8Array(key) };
}
