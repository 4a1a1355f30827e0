/**
 * Why a quote was refused, as values (keylime's `Failure`/`Event` shape): the
 * check that failed, a code distinct for every way it can fail, details that
 * name what was expected and what was found, and whether a later attempt on
 * the same, unchanged machine could pass. verifyQuote never throws for a bad
 * quote; it returns these, in the order the checks ran, plus the checks it did
 * not run because an earlier one stopped it.
 *
 * Codes are the stable API (audit records and the join protocol carry them);
 * callers branch on `code`, never on any text.
 */

/** The checks of DESIGN.md §5, in the fixed order they run. */
export const QUOTE_CHECKS = [
  "policy", // the verifier's own policy is usable: well-formed, pins set, at least one PCR
  "signature", // the AK is a restricted signing key; scheme, hash (and PSS salt) as pinned; it verifies
  "attest", // TPMS_ATTEST: magic, type, well-formed, qualifiedSigner = the AK
  "nonce", // extraData is the verifier's nonce, at least NONCE_BYTES_MIN long
  "pcr-digest", // the reported PCR values hash to the quoted pcrDigest
  "pcr-policy", // every policy PCR is quoted, reported and has an approved value
  "clock", // the clock is `safe` and not older than an earlier accepted quote's
  "firmware", // the TPM firmware version is at least the policy's minimum
] as const;
export type QuoteCheck = (typeof QUOTE_CHECKS)[number];

/** A fresh nonce shorter than this gives an attacker a useful chance to have a quote for it ready. */
export const NONCE_BYTES_MIN = 16;

/**
 * Every code, with the check it belongs to and whether it is recoverable:
 * `true` when the same machine, unchanged, may pass a later attempt (a
 * transient TPM state or a race between quote and PCR read); `false` when the
 * quote or platform is refused as it is until someone acts (the operator
 * changes the policy or enrollment, or the machine changes).
 */
const CODES = {
  // policy
  "policy-malformed": { check: "policy", recoverable: false },
  "policy-empty": { check: "policy", recoverable: false },
  // signature
  "ak-malformed": { check: "signature", recoverable: false },
  "ak-not-restricted-signing": { check: "signature", recoverable: false },
  "ak-unsupported": { check: "signature", recoverable: false },
  "signature-malformed": { check: "signature", recoverable: false },
  "signature-scheme-not-allowed": { check: "signature", recoverable: false },
  "signature-hash-not-allowed": { check: "signature", recoverable: false },
  "signature-salt-length-not-allowed": { check: "signature", recoverable: false },
  "signature-invalid": { check: "signature", recoverable: false },
  // attest
  "attest-too-short": { check: "attest", recoverable: false },
  "attest-magic": { check: "attest", recoverable: false },
  "attest-type": { check: "attest", recoverable: false },
  "attest-malformed": { check: "attest", recoverable: false },
  "signer-mismatch": { check: "attest", recoverable: false },
  // nonce
  "nonce-too-short": { check: "nonce", recoverable: false },
  "nonce-mismatch": { check: "nonce", recoverable: true },
  // pcr-digest
  "pcr-selection-empty": { check: "pcr-digest", recoverable: false },
  "pcr-quoted-not-reported": { check: "pcr-digest", recoverable: false },
  "pcr-value-wrong-size": { check: "pcr-digest", recoverable: false },
  // A PCR extended between the quote and the read of the values also gives this: retry.
  "pcr-digest-mismatch": { check: "pcr-digest", recoverable: true },
  // pcr-policy
  "policy-pcr-not-quoted": { check: "pcr-policy", recoverable: false },
  "policy-pcr-not-reported": { check: "pcr-policy", recoverable: false },
  "policy-pcr-value-not-approved": { check: "pcr-policy", recoverable: false },
  // clock
  // `safe` comes back once the TPM writes its clock to NV again, or after an owner's TPM2_ClockSet.
  "clock-not-safe": { check: "clock", recoverable: true },
  "reset-count-went-back": { check: "clock", recoverable: false },
  "restart-count-went-back": { check: "clock", recoverable: false },
  "clock-not-advanced": { check: "clock", recoverable: false },
  // firmware
  "firmware-too-old": { check: "firmware", recoverable: false },
  // any check: a bug, or input shaped in a way not foreseen. The check is refused, never skipped.
  "check-error": { check: undefined, recoverable: false },
} as const satisfies Record<string, { check: QuoteCheck | undefined; recoverable: boolean }>;

export type QuoteFailureCode = keyof typeof CODES;

/** JSON values only: a failure goes into audit records, CLI output and the join protocol as it is. */
export type QuoteFailureDetail = string | number | boolean | readonly string[];
export type QuoteFailureDetails = Readonly<Record<string, QuoteFailureDetail>>;

export interface QuoteFailure {
  readonly check: QuoteCheck;
  readonly code: QuoteFailureCode;
  /** What was expected and what was found (hex for bytes, decimal strings for 64-bit counters). */
  readonly details: QuoteFailureDetails;
  readonly recoverable: boolean;
}

/** A failure of `code`; its check and recoverability come from the table above. */
export function quoteFailure(
  code: Exclude<QuoteFailureCode, "check-error">,
  details: QuoteFailureDetails = {},
): QuoteFailure {
  const entry = CODES[code];
  return { check: entry.check, code, details, recoverable: entry.recoverable };
}

/** A check threw: refused under that check's name. `error` is the exception's class name only. */
export function checkErrorFailure(check: QuoteCheck, error: string): QuoteFailure {
  return { check, code: "check-error", details: { error }, recoverable: false };
}

/** Whether `code` is one of ours (e.g. read back from an audit record or the wire). */
export function isQuoteFailureCode(code: string): code is QuoteFailureCode {
  return Object.prototype.hasOwnProperty.call(CODES, code);
}

/** The TPM's clock state in a quote; compare with a later one to refuse replays. */
export interface QuoteClock {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
}
