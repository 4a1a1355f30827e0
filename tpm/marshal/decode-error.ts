/**
 * The one error a TPM decoder throws. Input that is truncated, oversize or
 * inconsistent (a wrong tag, a size that does not match its contents) is
 * reported with this class, never with a RangeError from reading past a buffer.
 */
export type TpmDecodeErrorCode =
  "TRUNCATED" | "OVERSIZE" | "INCONSISTENT" | "TRAILING_BYTES" | "UNKNOWN_SELECTOR";

export class TpmDecodeError extends Error {
  override readonly name = "TpmDecodeError";
  constructor(
    readonly code: TpmDecodeErrorCode,
    /** What was being decoded, e.g. "TPMS_ATTEST.magic". */
    readonly what: string,
    message: string,
  ) {
    super(`${what}: ${message}`);
  }
}

/** Thrown by a tagged-union accessor asked for a member the tag does not select. */
export class TpmUnionTagError extends Error {
  override readonly name = "TpmUnionTagError";
  readonly code = "WRONG_UNION_TAG";
  constructor(
    readonly union: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${union}: tag is 0x${actual.toString(16)}, not 0x${expected.toString(16)}`);
  }
}
