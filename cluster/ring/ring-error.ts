/**
 * The one error the ring modules throw. Callers branch on `code`, never on the message text.
 *
 * - INVALID_ARGUMENT: a caller passed a bad peer, weight, time or partition.
 * - TOO_FEW_PEERS: fewer weighted peers than replicas, so no placement can put replicas on distinct peers.
 * - NOT_BUILT: a lookup on a ring that was never rebalanced.
 * - INVALID_RING: validate() found a broken invariant (a bug, or a decoded ring that lies).
 * - DECODE: encoded ring bytes are truncated, oversize, inconsistent or fail their checksum.
 */
export type RingErrorCode = "INVALID_ARGUMENT" | "TOO_FEW_PEERS" | "NOT_BUILT" | "INVALID_RING" | "DECODE";

export class RingError extends Error {
  override readonly name = "RingError";
  constructor(
    readonly code: RingErrorCode,
    message: string,
  ) {
    super(message);
  }
}
