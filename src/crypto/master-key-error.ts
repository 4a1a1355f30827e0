/**
 * Why a peer could not obtain its cluster master key from its sealed file, its
 * TPM or recovery shares. `reason` is a stable code for status output, scripts
 * and tests (never match the message); `code` is the LockboxError code the
 * edge maps to the wire. Messages name the file or share at fault and what to
 * do, never key bytes.
 */
import { LockboxError, type LockboxErrorCode } from "../errors.js";

export type MasterKeyFailure =
  /** The TPM's PCRs differ from the values the CMK was sealed to: the peer must attest again. */
  | "CMK_PCRS_CHANGED"
  /** The TPM's storage root key is not the one the CMK was sealed under (another or a cleared TPM). */
  | "CMK_SRK_MISMATCH"
  /** The sealed file is missing. */
  | "CMK_SEALED_FILE_MISSING"
  /** The sealed file is damaged (checksum, format, size) or was edited (check value). */
  | "CMK_SEALED_FILE_DAMAGED"
  /** The sealed file belongs to another cluster. */
  | "CMK_WRONG_CLUSTER"
  /** The TPM could not be reached or refused the unseal for another reason. */
  | "CMK_TPM_FAILED"
  /** A recovery share file cannot be read, is malformed, or fails its checksum. */
  | "SHARE_DAMAGED"
  /** Shares from different clusters, epochs or splits, or the same share twice. */
  | "SHARES_MIXED"
  /** Fewer shares than the threshold. */
  | "SHARES_TOO_FEW"
  /** The shares combine to a key that fails the master key's check value or the store's canary. */
  | "SHARES_WRONG_KEY";

const LOCKBOX_CODE: Record<MasterKeyFailure, LockboxErrorCode> = {
  CMK_PCRS_CHANGED: "FAILED_PRECONDITION",
  CMK_SRK_MISMATCH: "FAILED_PRECONDITION",
  CMK_SEALED_FILE_MISSING: "FAILED_PRECONDITION",
  CMK_SEALED_FILE_DAMAGED: "DATA_LOSS",
  CMK_WRONG_CLUSTER: "FAILED_PRECONDITION",
  CMK_TPM_FAILED: "UNAVAILABLE",
  SHARE_DAMAGED: "DATA_LOSS",
  SHARES_MIXED: "INVALID_ARGUMENT",
  SHARES_TOO_FEW: "FAILED_PRECONDITION",
  SHARES_WRONG_KEY: "FAILED_PRECONDITION",
};

export class MasterKeyError extends LockboxError {
  constructor(
    readonly reason: MasterKeyFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(LOCKBOX_CODE[reason], message, undefined, options);
  }
}

export const isMasterKeyError = (e: unknown, reason?: MasterKeyFailure): e is MasterKeyError =>
  e instanceof MasterKeyError && (reason === undefined || e.reason === reason);
