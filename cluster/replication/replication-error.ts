/**
 * The one error the pure replication modules throw. Callers branch on `code`, never on the message.
 *
 * - INVALID_ARGUMENT: a bad parameter from the caller (a quorum of 0, a bucket count not a power of 2).
 * - INVALID_RECORD: a record or stamp breaks its invariants (decoded from damaged or hostile bytes, or a bug).
 * - CONFLICT: two versions of one key disagree on something immutable (id, material, creation): never
 *   merged, since picking either could serve the wrong material; the caller quarantines and repairs.
 * - RIVAL: two unsettled versions of a key made by rival attempts of one client request
 *   (replicated-key.ts): not merged until one is settled; a replica keeps the one it holds.
 * - CLOCK_DRIFT: a remote timestamp is further ahead of the local physical clock than allowed.
 * - CLOCK_OVERFLOW: the logical counter would pass its bound (the physical clock has stalled).
 */
export type ReplicationErrorCode =
  "INVALID_ARGUMENT" | "INVALID_RECORD" | "CONFLICT" | "RIVAL" | "CLOCK_DRIFT" | "CLOCK_OVERFLOW";

export class ReplicationError extends Error {
  override readonly name = "ReplicationError";
  constructor(
    readonly code: ReplicationErrorCode,
    message: string,
  ) {
    super(message);
  }
}
