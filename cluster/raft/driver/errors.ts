/**
 * Typed errors the driver rejects with. Callers branch on `code` (or instanceof), never on message text.
 */
export type RaftDriverErrorCode =
  "NOT_LEADER" | "TIMEOUT" | "STOPPED" | "INVALID_ARGUMENT" | "REJECTED" | "BUSY";

export abstract class RaftDriverError extends Error {
  abstract readonly code: RaftDriverErrorCode;
}

/** This node is not the leader; `leaderHint` is the leader it knows of, or "" when it knows none. */
export class NotLeader extends RaftDriverError {
  override readonly name = "NotLeader";
  readonly code = "NOT_LEADER";
  constructor(readonly leaderHint: string) {
    super(leaderHint === "" ? "not the leader; no leader known" : `not the leader; leader is ${leaderHint}`);
  }
}

/**
 * The operation did not complete in `timeoutMs`. For a proposal the outcome is unknown: the entry may
 * still commit later, so a caller that retries must make its command idempotent.
 */
export class Timeout extends RaftDriverError {
  override readonly name = "Timeout";
  readonly code = "TIMEOUT";
  constructor(
    readonly operation: string,
    readonly timeoutMs: number,
  ) {
    super(`${operation} did not complete within ${timeoutMs} ms`);
  }
}

/** The driver was stopped (or its storage failed) before the operation completed. */
export class Stopped extends RaftDriverError {
  override readonly name = "Stopped";
  readonly code = "STOPPED";
  constructor(reason: string) {
    super(`raft driver stopped: ${reason}`);
  }
}

export class InvalidArgument extends RaftDriverError {
  override readonly name = "InvalidArgument";
  readonly code = "INVALID_ARGUMENT";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/**
 * The core refused the operation (e.g. a membership change while another is pending). `reason` is the
 * core's code for why (a RaftRefusalReason such as "LEARNER_BEHIND", else its RaftErrorCode): match on it.
 */
export class Rejected extends RaftDriverError {
  override readonly name = "Rejected";
  readonly code = "REJECTED";
  constructor(
    readonly operation: string,
    readonly reason: string,
    detail = "",
  ) {
    super(`${operation} rejected: ${reason}${detail === "" ? "" : `: ${detail}`}`);
  }
}

/** Too many calls are already waiting (`pendingMax`); retry later. Nothing was proposed. */
export class Busy extends RaftDriverError {
  override readonly name = "Busy";
  readonly code = "BUSY";
  constructor(
    readonly operation: string,
    readonly pendingMax: number,
  ) {
    super(`${operation}: ${pendingMax} calls already pending`);
  }
}
