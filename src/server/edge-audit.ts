/**
 * How the gRPC edge classifies a call for the audit log (src/audit). The
 * edge audits every call, also refused ones; an event never carries key
 * bytes (AuditEventInput has no field that could take them).
 */
import * as grpc from "@grpc/grpc-js";
import type { AuditEventInput, AuditOutcome, RefusalInput } from "../audit/audit-log.js";

export type { AuditEventInput, AuditOutcome, RefusalInput };

/** The part of AuditLog the edge writes to. */
export interface EdgeAuditSink {
  append(event: AuditEventInput): Promise<unknown>;
  /**
   * Counts a call refused before it had an accountable identity (no valid certificate, too
   * many calls in flight) into an aggregate record per source and reason per time window:
   * a flood of them costs a bounded number of writes, never one each.
   */
  countRefusal(refusal: RefusalInput): void;
}

export function outcomeOf(code: grpc.status): AuditOutcome {
  switch (code) {
    case grpc.status.OK:
      return "ok";
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.PERMISSION_DENIED:
      return "denied";
    case grpc.status.NOT_FOUND:
      return "not_found";
    case grpc.status.INVALID_ARGUMENT:
      return "invalid";
    default:
      return "error";
  }
}
