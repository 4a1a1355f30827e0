/**
 * Why a quote was refused. verifyQuote returns these as values (never throws),
 * one per failed check, in the order the checks run.
 */
export type QuoteFailureCode =
  | "ak-public" // the AK public area is malformed, or not a restricted signing key we can verify with
  | "signature" // the signature is malformed or does not verify over the attest bytes with the AK
  | "attest" // the attest bytes are not a well-formed TPMS_ATTEST
  | "magic" // TPMS_ATTEST.magic is not TPM_GENERATED_VALUE (0xff544347)
  | "type" // TPMS_ATTEST.type is not TPM_ST_ATTEST_QUOTE (0x8018)
  | "signer" // TPMS_ATTEST.qualifiedSigner is not the AK's qualified name
  | "nonce" // TPMS_ATTEST.extraData is not the expected nonce
  | "pcr-digest" // the reported PCR values do not hash to the quoted pcrDigest
  | "pcr-policy" // a quoted PCR value is not approved by the policy (or a policy PCR is not quoted)
  | "replay"; // clock / resetCount / restartCount are older than an earlier quote's

export interface QuoteFailure {
  readonly code: QuoteFailureCode;
  readonly message: string;
}

/** The TPM's clock state in a quote; compare with a later one to refuse replays. */
export interface QuoteClock {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
}
