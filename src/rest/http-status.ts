/**
 * The one place where a failed REST call (the call pipeline's CallFailure) becomes an HTTP status
 * and Barbican's error document `{"code", "title", "description"}`. The request part at fault
 * (CallFailure.field) refines a few statuses the way Barbican answers them: a body that is too
 * large is 413, a Content-Type it cannot read 415, an Accept it cannot serve 406.
 */
import type { CallFailure } from "../edge/call-pipeline.js";
import type { LockboxErrorCode } from "../errors.js";

const STATUS: Record<LockboxErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  UNAUTHENTICATED: 401,
  FAILED_PRECONDITION: 409,
  UNAVAILABLE: 503,
  RESOURCE_EXHAUSTED: 429,
  DATA_LOSS: 500,
  INTERNAL: 500,
};

export const TITLES: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  409: "Conflict",
  413: "Request Entity Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function httpStatusOf(failure: CallFailure): number {
  if (failure.code === "RESOURCE_EXHAUSTED" && failure.field === "body") return 413;
  if (failure.code === "INVALID_ARGUMENT" && failure.field === "Content-Type") return 415;
  if (failure.code === "FAILED_PRECONDITION" && failure.field === "Accept") return 406;
  return STATUS[failure.code];
}

export function errorDocument(
  status: number,
  description: string,
): { code: number; title: string; description: string } {
  return { code: status, title: TITLES[status] ?? "Error", description };
}
