/**
 * The one error type LockboxClient rejects with. Callers branch on `code`
 * (the gRPC status code name), never on the message text.
 */
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";

export type StatusCodeName = keyof typeof GrpcStatus;

export class LockboxClientError extends Error {
  override readonly name = "LockboxClientError";
  constructor(
    /** gRPC status code name, e.g. "NOT_FOUND". */
    readonly code: StatusCodeName,
    message: string,
    /** For INVALID_ARGUMENT, the request field the peer named, when it did. */
    readonly field?: string,
    /** The endpoint whose answer this is (the last one tried). */
    readonly endpoint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The numeric gRPC status. */
  get grpcCode(): number {
    return GrpcStatus[this.code];
  }
}

/** Name of a numeric gRPC status; unknown numbers become "UNKNOWN". */
export function statusName(code: number): StatusCodeName {
  const name = GrpcStatus[code] as StatusCodeName | undefined;
  return typeof name === "string" ? name : "UNKNOWN";
}

/** Metadata key under which the server names the field at fault, if it does. */
export const FIELD_METADATA_KEY = "lockbox-field";

export function fromServiceError(err: ServiceError, endpoint: string): LockboxClientError {
  const fieldValue = err.metadata?.get(FIELD_METADATA_KEY)[0];
  const field = typeof fieldValue === "string" && fieldValue !== "" ? fieldValue : undefined;
  // grpc-js prefixes details with "<code> <NAME>: "; keep the peer's own words.
  const details = typeof err.details === "string" && err.details !== "" ? err.details : err.message;
  return new LockboxClientError(statusName(err.code), details, field, endpoint, { cause: err });
}

export const isLockboxClientError = (e: unknown, code?: StatusCodeName): e is LockboxClientError =>
  e instanceof LockboxClientError && (code === undefined || e.code === code);
