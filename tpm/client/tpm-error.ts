import { TPM_CC } from "../spec/constants.js";
import { decodeResponseCode } from "../spec/response-codes.js";

const CC_NAMES = new Map<number, string>(Object.entries(TPM_CC).map(([name, cc]) => [cc, `TPM2_${name}`]));

/** "TPM2_Quote" for TPM_CC_Quote; hex for commands not in the table. */
export function commandName(commandCode: number): string {
  return CC_NAMES.get(commandCode) ?? `TPM_CC_0x${commandCode.toString(16)}`;
}

/**
 * A command the TPM answered with a non-zero response code. Callers match on
 * `baseCode` (e.g. TPM_RC.POLICY_FAIL), never on the message text.
 */
export class TpmError extends Error {
  override readonly name = "TpmError";
  readonly code = "TPM_RC";
  /** The response code exactly as returned, e.g. 0x99d. */
  readonly rc: number;
  /** The code without its parameter/handle/session number, e.g. 0x09d. */
  readonly baseCode: number;
  /** e.g. "TPM_RC_POLICY_FAIL". */
  readonly rcName: string;
  /** e.g. "TPM_RC_POLICY_FAIL (session 1)". */
  readonly rcText: string;
  readonly commandCode: number;

  constructor(commandCode: number, rc: number) {
    const decoded = decodeResponseCode(rc);
    super(`${commandName(commandCode)} failed: ${decoded.text} (0x${rc.toString(16)})`);
    this.rc = rc;
    this.baseCode = decoded.baseCode;
    this.rcName = decoded.name;
    this.rcText = decoded.text;
    this.commandCode = commandCode;
  }
}

export type TpmClientErrorCode =
  | "BAD_RESPONSE" // a response that does not fit its command (tag, size, handle count)
  | "RESPONSE_HMAC" // a session's response HMAC did not verify: the response was not from the TPM we share a key with
  | "NAME_REQUIRED" // an HMAC session needs the name of an object handle that the caller did not give
  | "SESSION_CLOSED" // a session used after it was flushed
  | "SALT_KEY_MISMATCH" // the key a session would be salted to is not the one pinned earlier (a swapped key on the bus)
  | "BAD_ARGUMENT"
  | "UNSUPPORTED";

/** A failure on our side of the command stream (not a TPM response code). */
export class TpmClientError extends Error {
  override readonly name = "TpmClientError";
  constructor(
    readonly code: TpmClientErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
