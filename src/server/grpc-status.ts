/**
 * The one place where lockbox's typed errors become gRPC statuses. Which
 * errors keep their message (known LockboxErrors: field names, ids, never key
 * material) and which become a generic INTERNAL is the call pipeline's rule
 * (src/edge/call-pipeline.ts toCallFailure), shared with the REST API.
 */
import * as grpc from "@grpc/grpc-js";
import type { LockboxErrorCode } from "../errors.js";
import { type CallFailure, INTERNAL_ERROR_MESSAGE, toCallFailure } from "../edge/call-pipeline.js";

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

export { INTERNAL_ERROR_MESSAGE };

export function toGrpcStatus(err: unknown): GrpcStatus {
  return grpcStatusOf(toCallFailure(err));
}

/** A call pipeline failure (src/edge/call-pipeline.ts) as a gRPC status. */
export function grpcStatusOf(failure: CallFailure): GrpcStatus {
  const code = CODES[failure.code];
  return failure.field === undefined
    ? { code, details: failure.message }
    : { code, details: failure.message, field: failure.field };
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
