/**
 * The one place where lockbox's typed errors become gRPC statuses. Known
 * LockboxErrors keep their message (written to be safe for callers: field
 * names, ids, never key material); anything else becomes INTERNAL with a
 * generic message, and the detail stays in the server's log.
 */
import * as grpc from "@grpc/grpc-js";
import { type LockboxErrorCode, LockboxError } from "../errors.js";

export interface GrpcStatus {
  readonly code: grpc.status;
  readonly details: string;
  /** For INVALID_ARGUMENT: the request field at fault; also sent as the `lockbox-field` trailer. */
  readonly field?: string;
}

const CODES: Record<LockboxErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  DATA_LOSS: grpc.status.DATA_LOSS,
  INTERNAL: grpc.status.INTERNAL,
};

export const INTERNAL_ERROR_MESSAGE = "internal error";

export function toGrpcStatus(err: unknown): GrpcStatus {
  if (err instanceof LockboxError && Object.hasOwn(CODES, err.code)) {
    const code = CODES[err.code];
    if (code === grpc.status.INTERNAL) return { code, details: INTERNAL_ERROR_MESSAGE };
    return err.field === undefined
      ? { code, details: err.message }
      : { code, details: err.message, field: err.field };
  }
  return { code: grpc.status.INTERNAL, details: INTERNAL_ERROR_MESSAGE };
}

/** A grpc-js ServiceError for `callback(error)`, with the status, message and field trailer. */
export function toServiceError(status: GrpcStatus): Partial<grpc.StatusObject> & Error {
  const metadata = new grpc.Metadata();
  if (status.field !== undefined) metadata.set("lockbox-field", status.field);
  return Object.assign(new Error(status.details), { code: status.code, details: status.details, metadata });
}

/** "NOT_FOUND" for grpc.status.NOT_FOUND: what the audit log records. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? `CODE_${code}`;
}
