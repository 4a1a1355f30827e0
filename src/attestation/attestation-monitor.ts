/**
 * Continuous attestation, the verifying member's side (DESIGN.md §5, issue 9
 * item 5): on a fixed interval, re-quote members with a fresh nonce and check
 * the answer exactly as a join's quote is checked (verifyQuote, against the AK
 * activated at its join and its policy).
 *
 * Who decides (`scope`): in a running peer the raft **leader** re-quotes every
 * other member and is the one that records what it found, as control-state
 * entries every member applies alike (fence, unfence, down, the quote clock):
 * one verifier per member per round, so the recorded quote clocks only move
 * forward and every peer agrees on who is fenced. The leader cannot re-quote
 * itself, so each **follower** re-quotes the leader only, and may only propose
 * to fence it (the leader applies its own fence, hands over leadership, and the
 * others refuse its calls) or, when the leader is marked down, to record its
 * passed quote, which makes it active again (nobody else could). A caller
 * without scope re-quotes every member.
 *
 * - A quote that fails is untrusted: the member is **fenced** through the
 *   control state (JoinAuthority.fence). A failure every check marks
 *   recoverable (a PCR read racing an extend, a clock not yet `safe` after a
 *   restart) fences only when it repeats `recoverableFailuresMax` rounds in a
 *   row. `mayFence` can hold a fence back (the peer holds one back when the
 *   voters left unfenced would not make a quorum: a control state that cannot
 *   commit could never unfence anyone again).
 * - A fenced member is still re-quoted: it returns (JoinAuthority.unfence) only
 *   with a quote that passes every check against its policy as it is then,
 *   i.e. after an operator approved its new state (`lockbox policy add`). The
 *   evidence is that of a join's quote (fresh nonce, the AK the join bound to
 *   its enrolled EK, the approved PCR values, a clock later than any accepted);
 *   its certificate and CMK were never withdrawn, so nothing else is re-issued.
 *   A full join (`lockbox join`) from the fenced state works too.
 * - A member that does not answer within `timeoutMs` is unreachable, not
 *   untrusted: it is **marked down**, never fenced; a later good quote makes
 *   it active again. A member admitted less than `downGraceMs` ago is not
 *   marked down yet (its server may still be starting).
 *
 * Every fence, unfence and down mark is audited; every check's result is
 * counted (`onCheck`, the metrics). Rounds never overlap; a round asks at most
 * `concurrencyMax` members at once.
 */
import { randomBytes } from "node:crypto";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { parseQuotePolicy } from "../../tpm/verify/quote-policy.js";
import type { EnrolledMember, JoinAuthority } from "./join-authority.js";
import { type JoinRefusal, describeJoinRefusal, joinRefusal, quoteRefusal } from "./join-refusal.js";
import type { JoinAuditSink } from "./join-verifier.js";
import { QUOTE_CHECKS, type QuoteClock } from "../../tpm/verify/quote-failure.js";
import type { RequoteAnswer, RequoteRequest } from "./requote.js";

/** How a member is reached for a re-quote (gRPC over mTLS in a peer, in process in tests). Throws when it does not answer. */
export interface RequoteChannel {
  requote(peerId: string, request: RequoteRequest, timeoutMs: number): Promise<RequoteAnswer>;
}

export interface AttestationMonitorOptions {
  readonly selfId: string;
  readonly authority: JoinAuthority;
  readonly channel: RequoteChannel;
  readonly audit: JoinAuditSink;
  /** Time between the starts of two rounds. */
  readonly intervalMs: number;
  /** How long one member has to answer; below intervalMs. */
  readonly timeoutMs: number;
  readonly recoverableFailuresMax?: number;
  readonly concurrencyMax?: number;
  readonly log?: (line: string) => void;
  /** Whom to re-quote this round (see the top of this file); every member when absent. */
  readonly scope?: () => MonitorScope;
  /** null lets a fence through; a string says why it is held back (the verdict is then "suspect"). */
  readonly mayFence?: (peerId: string) => Promise<string | null> | string | null;
  /** A member whose state changed less than this ago is not marked down yet; default 2 intervals. */
  readonly downGraceMs?: number;
  /** One result of one check ("reachable" for the answer itself, else QUOTE_CHECKS and the policy lookup). */
  readonly onCheck?: (r: { check: string; ok: boolean }) => void;
  readonly now?: () => number;
}

/**
 * Whom a member re-quotes now. "every-member": the leader's view, it records every outcome. "leader":
 * a follower checks only `peerId` (the leader) and may only fence it. "none": nothing this round.
 */
export type MonitorScope =
  | { readonly kind: "every-member" }
  | { readonly kind: "leader"; readonly peerId: string }
  | { readonly kind: "none" };

export type MemberVerdict =
  | { readonly peerId: string; readonly outcome: "attested" | "unfenced" }
  | { readonly peerId: string; readonly outcome: "fenced" | "suspect"; readonly refusal: JoinRefusal }
  | { readonly peerId: string; readonly outcome: "down"; readonly reason: string };

/** States whose members are re-quoted: fenced ones to see whether they may return; removed ones are gone. */
const REQUOTED_STATES = new Set(["active", "down", "fenced"]);
const NONCE_BYTES = 32;

export class AttestationMonitor {
  readonly #suspect = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<readonly MemberVerdict[]> | undefined;
  #stopped = false;
  #lastFailure = "";

  constructor(private readonly options: AttestationMonitorOptions) {
    if (!(options.timeoutMs > 0 && options.timeoutMs < options.intervalMs)) {
      throw new RangeError("timeoutMs must be positive and below intervalMs");
    }
  }

  /** Starts the interval; the first round runs after one interval. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => {
      if (this.#round === undefined) {
        void this.round().catch((e: unknown) => {
          // The control state without a leader, a proposal timing out: the next round tries again.
          const line = `attestation: a re-quote round failed: ${e instanceof Error ? e.message : String(e)}`;
          if (line !== this.#lastFailure) (this.options.log ?? (() => undefined))(line);
          this.#lastFailure = line;
        });
      }
    }, this.options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round?.catch(() => undefined);
  }

  /** One round over every other active or down member; resolves to each one's verdict. */
  round(): Promise<readonly MemberVerdict[]> {
    this.#round ??= this.#runRound().finally(() => (this.#round = undefined));
    return this.#round;
  }

  async #runRound(): Promise<readonly MemberVerdict[]> {
    const scope = this.options.scope?.() ?? { kind: "every-member" };
    if (scope.kind === "none") return [];
    const members = (await this.options.authority.members()).filter(
      (m) =>
        m.peerId !== this.options.selfId &&
        REQUOTED_STATES.has(m.state) &&
        m.akPublic !== undefined &&
        // A follower checks the leader while it is trusted; what becomes of a fenced one is the new leader's.
        (scope.kind === "every-member" || (m.peerId === scope.peerId && m.state !== "fenced")),
    );
    const records = scope.kind === "every-member";
    const verdicts: MemberVerdict[] = [];
    const limit = this.options.concurrencyMax ?? 8;
    for (let i = 0; i < members.length; i += limit) {
      verdicts.push(...(await Promise.all(members.slice(i, i + limit).map((m) => this.#check(m, records)))));
    }
    return verdicts;
  }

  /** `records`: this member records every outcome (the leader); otherwise it may only fence. */
  async #check(member: EnrolledMember, records: boolean): Promise<MemberVerdict> {
    const { peerId } = member;
    const policy = await this.options.authority.policy(member.policyName);
    if (policy === undefined) {
      this.#count("policy", false);
      return this.#failed(member, joinRefusal("policy-unknown", { policy: member.policyName }));
    }
    const parsed = parseQuotePolicy(policy);
    const pcrs = "problem" in parsed ? [] : parsed.pcrs.map((e) => ({ hashAlg: e.hashAlg, pcr: e.pcr }));
    const nonce = randomBytes(NONCE_BYTES);
    let answer: RequoteAnswer;
    try {
      answer = await withTimeout(
        this.options.channel.requote(peerId, { nonce, pcrs }, this.options.timeoutMs),
        this.options.timeoutMs,
      );
    } catch (err) {
      this.#count("reachable", false);
      const reason = `no answer to a re-quote: ${errorCode(err)}`;
      const now = this.options.now?.() ?? Date.now();
      const grace = this.options.downGraceMs ?? 2 * this.options.intervalMs;
      const settled = member.stateChangedAtMs === undefined || now - member.stateChangedAtMs >= grace;
      if (records && member.state === "active" && settled) {
        await this.options.authority.markDown(peerId, reason);
        await this.#audit(
          peerId,
          "error",
          "UNAVAILABLE",
          `peer ${peerId} marked down (not fenced): ${reason}`,
        );
      }
      return { peerId, outcome: "down", reason };
    }
    this.#count("reachable", true);
    const verdict = verifyQuote({
      attestBytes: answer.attest,
      signature: answer.signature,
      akPublic: member.akPublic!,
      expectedNonce: nonce,
      pcrValues: answer.pcrValues,
      policy,
      ...(member.lastQuoteClock !== undefined ? { previous: member.lastQuoteClock } : {}),
    });
    if (!verdict.ok) {
      const failed = new Set(verdict.failures.map((f) => f.check));
      for (const check of failed) this.#count(check, false);
      return this.#failed(member, quoteRefusal(verdict.failures));
    }
    for (const check of QUOTE_CHECKS) this.#count(check, true);
    this.#suspect.delete(peerId);
    const { clock, resetCount, restartCount } = verdict.clock;
    if (!records) {
      if (member.state === "down") await this.#returnDownLeader(peerId, { clock, resetCount, restartCount });
      return { peerId, outcome: "attested" };
    }
    if (member.state === "fenced") {
      await this.options.authority.unfence(peerId, { clock, resetCount, restartCount });
      await this.#audit(
        peerId,
        "ok",
        "OK",
        `peer ${peerId} unfenced: its re-quote passed every check against policy ${member.policyName}`,
      );
      return { peerId, outcome: "unfenced" };
    }
    await this.options.authority.attested(peerId, { clock, resetCount, restartCount });
    return { peerId, outcome: "attested" };
  }

  /**
   * A follower's passed re-quote of a leader marked down. The leader re-quotes every member but
   * itself, so a peer marked down while another led (every peer restarts after a recovery, and a
   * peer waiting to re-enrol answers no re-quote) would stay down for as long as it leads. Its quote
   * passed every check a leader's would, so it is recorded alike. Two followers may both propose: the
   * one whose quote clock is not later is refused, and that is no failure once the leader is active.
   */
  async #returnDownLeader(peerId: string, quoteClock: QuoteClock): Promise<void> {
    try {
      await this.options.authority.attested(peerId, quoteClock);
    } catch (err) {
      if ((await this.options.authority.member(peerId))?.state === "down") throw err;
    }
  }

  async #failed(member: EnrolledMember, refusal: JoinRefusal): Promise<MemberVerdict> {
    const { peerId } = member;
    // Already fenced: it stays so, and says why in its record; nothing new to propose or audit.
    if (member.state === "fenced") return { peerId, outcome: "fenced", refusal };
    const count = (this.#suspect.get(peerId) ?? 0) + 1;
    if (refusal.recoverable && count < (this.options.recoverableFailuresMax ?? 2)) {
      this.#suspect.set(peerId, count);
      return { peerId, outcome: "suspect", refusal };
    }
    const reason = `re-quote failed: ${describeJoinRefusal(refusal)}`;
    const held = (await this.options.mayFence?.(peerId)) ?? null;
    if (held !== null) {
      this.#suspect.set(peerId, count);
      await this.#audit(
        peerId,
        "error",
        "FAILED_PRECONDITION",
        `peer ${peerId} NOT fenced (${held}): ${reason}`,
      );
      return { peerId, outcome: "suspect", refusal };
    }
    this.#suspect.delete(peerId);
    await this.options.authority.fence(peerId, reason);
    await this.#audit(peerId, "denied", "PERMISSION_DENIED", `peer ${peerId} fenced: ${reason}`);
    return { peerId, outcome: "fenced", refusal };
  }

  #count(check: string, ok: boolean): void {
    this.options.onCheck?.({ check, ok });
  }

  async #audit(
    peerId: string,
    outcome: "ok" | "denied" | "error",
    status: string,
    detail: string,
  ): Promise<void> {
    try {
      await this.options.audit.append({ identity: peerId, operation: "Attest", outcome, status, detail });
    } catch (err) {
      (this.options.log ?? ((l) => process.stderr.write(l + "\n")))(
        `attestation: audit write failed (${errorCode(err)}): ${detail}`,
      );
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error("timed out"), { code: "DEADLINE_EXCEEDED" })),
      ms,
    );
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function errorCode(err: unknown): string {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === "string" || typeof code === "number") return String(code);
  }
  return err instanceof Error ? err.name : "error";
}
