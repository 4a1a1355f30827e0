/**
 * Why a join was refused, as a value (DESIGN.md §5; keylime's `Failure`
 * shape, like tpm/verify's QuoteFailure): the check that failed, a code that
 * is stable across versions, details naming what was expected and found, and
 * whether the same machine, unchanged, could pass a later attempt. The
 * verifier audits it and sends it to the joiner, whose operator sees it as
 * it is; callers branch on `code`, never on text.
 *
 * The join's own checks run around verifyQuote's: the member and its EK
 * first, then credential activation and the join token, then the nonce's
 * freshness, then the quote's checks (QUOTE_CHECKS) in their order, then
 * admission. A quote refusal names the first quote failure as its check and
 * code and carries every quote failure in `quoteFailures`.
 */
import {
  QUOTE_CHECKS,
  type QuoteCheck,
  type QuoteFailure,
  type QuoteFailureCode,
  type QuoteFailureDetails,
  isQuoteFailureCode,
} from "../../tpm/verify/quote-failure.js";

/** The join protocol's checks before the quote, in the order they run. */
export const JOIN_CHECKS_BEFORE_QUOTE = [
  "session", // the step belongs to a live session of this verifier, in order, with a well-formed message
  "member", // the claimed peer id is enrolled and not removed
  "ek-enrollment", // the presented EK is the one enrolled for that peer id
  "ek-certificate", // the EK certificate certifies that EK and chains to the manufacturer CA
  "credential", // the joiner released the credential wrapped to the EK for the AK's name
  "join-token", // the joiner knows the one-time join token enrolled for it (when one was)
  "nonce-fresh", // the quote answers the nonce before it expired
] as const;

/**
 * Every check, in the fixed order of the join: the join's own, the quote's, then admission, then (after
 * the joiner sealed the CMK) its confirmation.
 */
export const JOIN_CHECKS = [...JOIN_CHECKS_BEFORE_QUOTE, ...QUOTE_CHECKS, "admit", "confirm"] as const;
export type JoinCheck = (typeof JOIN_CHECKS)[number];

/** The join's own codes, with their check and whether an unchanged machine may pass later. */
const CODES = {
  "session-unknown": { check: "session", recoverable: true },
  "session-expired": { check: "session", recoverable: true },
  "step-out-of-order": { check: "session", recoverable: true },
  "message-malformed": { check: "session", recoverable: false },
  "joins-busy": { check: "session", recoverable: true },
  "member-unknown": { check: "member", recoverable: false },
  "member-removed": { check: "member", recoverable: false },
  "member-state": { check: "member", recoverable: false },
  "ek-malformed": { check: "ek-enrollment", recoverable: false },
  "ek-not-enrolled": { check: "ek-enrollment", recoverable: false },
  "ek-certificate-missing": { check: "ek-certificate", recoverable: false },
  "ek-certificate-malformed": { check: "ek-certificate", recoverable: false },
  "ek-certificate-key-mismatch": { check: "ek-certificate", recoverable: false },
  "ek-certificate-untrusted": { check: "ek-certificate", recoverable: false },
  "ek-unsupported": { check: "credential", recoverable: false },
  "ak-name-malformed": { check: "credential", recoverable: false },
  "credential-not-activated": { check: "credential", recoverable: false },
  "join-token-required": { check: "join-token", recoverable: false },
  "join-token-invalid": { check: "join-token", recoverable: false },
  "join-token-expired": { check: "join-token", recoverable: false },
  "nonce-expired": { check: "nonce-fresh", recoverable: true },
  "policy-unknown": { check: "policy", recoverable: false },
  "admit-failed": { check: "admit", recoverable: true },
  // The proof is not made with the CMK the admission sent, for that admission.
  "confirm-proof-invalid": { check: "confirm", recoverable: false },
  // A rotation changed the active CMK epoch since the admission: join again.
  "confirm-epoch-changed": { check: "confirm", recoverable: false },
  // The admission was undone (not confirmed in time) or replaced by a later join: join again.
  "confirm-stale": { check: "confirm", recoverable: false },
  "confirm-failed": { check: "confirm", recoverable: true },
} as const satisfies Record<string, { check: JoinCheck; recoverable: boolean }>;

export type JoinOwnCode = keyof typeof CODES;
export type JoinRefusalCode = JoinOwnCode | QuoteFailureCode;

export interface JoinRefusal {
  readonly check: JoinCheck;
  readonly code: JoinRefusalCode;
  /** JSON values only (hex for bytes): audited and sent to the joiner as they are. */
  readonly details: QuoteFailureDetails;
  readonly recoverable: boolean;
  /** For a quote refusal: every failure verifyQuote found, in the order its checks ran. */
  readonly quoteFailures?: readonly QuoteFailure[];
}

export function joinRefusal(code: JoinOwnCode, details: QuoteFailureDetails = {}): JoinRefusal {
  const entry = CODES[code];
  return { check: entry.check, code, details, recoverable: entry.recoverable };
}

/** The refusal for a quote verifyQuote did not accept: named after its first failure. */
export function quoteRefusal(failures: readonly QuoteFailure[]): JoinRefusal {
  const first = failures[0];
  if (first === undefined)
    return joinRefusal("message-malformed", { problem: "quote refused without a reason" });
  return {
    check: first.check,
    code: first.code,
    details: first.details,
    recoverable: failures.every((f) => f.recoverable),
    quoteFailures: failures,
  };
}

export function isJoinRefusalCode(code: string): code is JoinRefusalCode {
  return Object.prototype.hasOwnProperty.call(CODES, code) || isQuoteFailureCode(code);
}

export function isJoinCheck(check: string): check is JoinCheck {
  return (JOIN_CHECKS as readonly string[]).includes(check);
}

/** One line for an operator or an audit record: `check/code: k=v, ...`; details are verifier-made, never key bytes. */
export function describeJoinRefusal(r: JoinRefusal): string {
  const details = Object.entries(r.details)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : String(v)}`)
    .join(", ");
  const more = (r.quoteFailures ?? []).slice(1).map((f) => f.code);
  return (
    `${r.check}/${r.code}` +
    (details.length > 0 ? `: ${details}` : "") +
    (more.length > 0 ? ` (also: ${more.join(", ")})` : "") +
    (r.recoverable ? " [may pass on retry]" : "")
  );
}

export type { QuoteCheck };
