/**
 * Continuous attestation, the verifying member's side (DESIGN.md §5, issue 9
 * item 5): on a fixed interval, re-quote every other member with a fresh
 * nonce and check the answer exactly as a join's quote is checked
 * (verifyQuote, against the AK activated at its join and its policy).
 *
 * - A quote that fails is untrusted: the member is **fenced** through the
 *   control state (JoinAuthority.fence) and must attest again (a full join)
 *   to return. A failure every check marks recoverable (a PCR read racing an
 *   extend, a clock not yet `safe` after a restart) fences only when it
 *   repeats `recoverableFailuresMax` rounds in a row.
 * - A member that does not answer within `timeoutMs` is unreachable, not
 *   untrusted: it is **marked down**, never fenced; a later good quote makes
 *   it active again.
 *
 * Every fence and every down mark is audited. Rounds never overlap; a round
 * asks at most `concurrencyMax` members at once.
 */
import { randomBytes } from "node:crypto";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { parseQuotePolicy } from "../../tpm/verify/quote-policy.js";
import type { EnrolledMember, JoinAuthority } from "./join-authority.js";
import { type JoinRefusal, describeJoinRefusal, joinRefusal, quoteRefusal } from "./join-refusal.js";
import type { JoinAuditSink } from "./join-verifier.js";
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
}

export type MemberVerdict =
  | { readonly peerId: string; readonly outcome: "attested" }
  | { readonly peerId: string; readonly outcome: "fenced" | "suspect"; readonly refusal: JoinRefusal }
  | { readonly peerId: string; readonly outcome: "down"; readonly reason: string };

/** States whose members are re-quoted: fenced ones must join again, removed ones are gone. */
const REQUOTED_STATES = new Set(["active", "down"]);
const NONCE_BYTES = 32;

export class AttestationMonitor {
  readonly #suspect = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<readonly MemberVerdict[]> | undefined;
  #stopped = false;

  constructor(private readonly options: AttestationMonitorOptions) {
    if (!(options.timeoutMs > 0 && options.timeoutMs < options.intervalMs)) {
      throw new RangeError("timeoutMs must be positive and below intervalMs");
    }
  }

  /** Starts the interval; the first round runs after one interval. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => {
      if (this.#round === undefined) void this.round().catch(() => undefined);
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
    const members = (await this.options.authority.members()).filter(
      (m) => m.peerId !== this.options.selfId && REQUOTED_STATES.has(m.state) && m.akPublic !== undefined,
    );
    const verdicts: MemberVerdict[] = [];
    const limit = this.options.concurrencyMax ?? 8;
    for (let i = 0; i < members.length; i += limit) {
      verdicts.push(...(await Promise.all(members.slice(i, i + limit).map((m) => this.#check(m)))));
    }
    return verdicts;
  }

  async #check(member: EnrolledMember): Promise<MemberVerdict> {
    const { peerId } = member;
    const policy = await this.options.authority.policy(member.policyName);
    if (policy === undefined) {
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
      const reason = `no answer to a re-quote: ${errorCode(err)}`;
      if (member.state === "active") {
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
    const verdict = verifyQuote({
      attestBytes: answer.attest,
      signature: answer.signature,
      akPublic: member.akPublic!,
      expectedNonce: nonce,
      pcrValues: answer.pcrValues,
      policy,
      ...(member.lastQuoteClock !== undefined ? { previous: member.lastQuoteClock } : {}),
    });
    if (!verdict.ok) return this.#failed(member, quoteRefusal(verdict.failures));
    this.#suspect.delete(peerId);
    const { clock, resetCount, restartCount } = verdict.clock;
    await this.options.authority.attested(peerId, { clock, resetCount, restartCount });
    return { peerId, outcome: "attested" };
  }

  async #failed(member: EnrolledMember, refusal: JoinRefusal): Promise<MemberVerdict> {
    const { peerId } = member;
    const count = (this.#suspect.get(peerId) ?? 0) + 1;
    if (refusal.recoverable && count < (this.options.recoverableFailuresMax ?? 2)) {
      this.#suspect.set(peerId, count);
      return { peerId, outcome: "suspect", refusal };
    }
    this.#suspect.delete(peerId);
    const reason = `re-quote failed: ${describeJoinRefusal(refusal)}`;
    await this.options.authority.fence(peerId, reason);
    await this.#audit(peerId, "denied", "PERMISSION_DENIED", `peer ${peerId} fenced: ${reason}`);
    return { peerId, outcome: "fenced", refusal };
  }

  async #audit(peerId: string, outcome: "denied" | "error", status: string, detail: string): Promise<void> {
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
