/**
 * How an edge (gRPC or REST) classifies a call for the audit log (src/audit). Every call is
 * audited, also refused ones; an event never carries key bytes (AuditEventInput has no field
 * that could take them). Outcomes follow lockbox's own error codes, so both transports write the
 * same records for the same result.
 */
import type { AuditEventInput, AuditOutcome, RefusalInput } from "../audit/audit-log.js";
import type { LockboxErrorCode } from "../errors.js";

export type { AuditEventInput, AuditOutcome, RefusalInput };

/** The part of AuditLog the edges write to. */
export interface EdgeAuditSink {
  append(event: AuditEventInput): Promise<unknown>;
  /**
   * Counts a call refused before it had an accountable identity (no valid certificate or token,
   * too many calls in flight) into an aggregate record per source and reason per time window:
   * a flood of them costs a bounded number of writes, never one each.
   */
  countRefusal(refusal: RefusalInput): void;
}

export function outcomeOf(code: LockboxErrorCode | "OK"): AuditOutcome {
  switch (code) {
    case "OK":
      return "ok";
    case "UNAUTHENTICATED":
    case "PERMISSION_DENIED":
      return "denied";
    case "NOT_FOUND":
      return "not_found";
    case "INVALID_ARGUMENT":
      return "invalid";
    default:
      return "error";
  }
}
