/**
 * Typed errors of the lockbox peer. Code inside src/ throws LockboxError with
 * one of these codes; the gRPC edge (src/server/grpc-status.ts) is the only
 * place that turns them into wire statuses. Never recognise an error by its
 * message text, and never put key material into a message or detail.
 */
export type LockboxErrorCode =
  | "INVALID_ARGUMENT" // a request field is wrong; `field` names it
  | "NOT_FOUND" // also used for keys of a project the caller may not see
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED" // authenticated, but the role does not allow the call
  | "UNAUTHENTICATED" // no valid client certificate
  | "FAILED_PRECONDITION" // peer sealed, not attested, key destroyed
  | "UNAVAILABLE" // no quorum or store closing; retryable
  | "RESOURCE_EXHAUSTED"
  | "DATA_LOSS" // stored data failed its integrity check
  | "INTERNAL";

export class LockboxError extends Error {
  override readonly name = "LockboxError";
  constructor(
    readonly code: LockboxErrorCode,
    message: string,
    /** For INVALID_ARGUMENT: the request field at fault, e.g. "bit_length". */
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (field: string, message: string): LockboxError =>
  new LockboxError("INVALID_ARGUMENT", `${field}: ${message}`, field);

export const notFound = (what: string): LockboxError => new LockboxError("NOT_FOUND", `${what} not found`);

export const isLockboxError = (e: unknown, code?: LockboxErrorCode): e is LockboxError =>
  e instanceof LockboxError && (code === undefined || e.code === code);
