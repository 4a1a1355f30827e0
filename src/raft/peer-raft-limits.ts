/**
 * The byte and lag bounds of a peer's raft node that an operator may tune (config.json, section `raft`),
 * with their defaults. Every peer of a cluster should use the same values: they bound what a leader
 * sends and accepts, and a follower becomes leader in its turn.
 */
import {
  DEFAULT_INFLIGHT_BYTES_MAX,
  DEFAULT_PROMOTE_LAG_MAX,
  DEFAULT_UNCOMMITTED_BYTES_MAX,
} from "../../cluster/raft/core/types.js";

export interface PeerRaftLimits {
  /**
   * Payload bytes a leader has in flight to one follower before it waits for acknowledgements (besides
   * 256 appends). Default 16 MiB. Lower it to bound the memory a slow follower's backlog takes.
   */
  inflightBytesMax: number;
  /**
   * Payload bytes of the leader's entries not yet committed; a proposal beyond it is refused
   * (reason UNCOMMITTED_BYTES_FULL) until commits catch up. Default 64 MiB.
   */
  uncommittedBytesMax: number;
  /**
   * A learner is promoted to voter only once its log is within this many entries of the leader's
   * (LEARNER_BEHIND otherwise). Default 1024. 0 demands that it hold every entry.
   */
  promoteLagMax: number;
}

export const PEER_RAFT_LIMITS_DEFAULT: Readonly<PeerRaftLimits> = Object.freeze({
  inflightBytesMax: DEFAULT_INFLIGHT_BYTES_MAX,
  uncommittedBytesMax: DEFAULT_UNCOMMITTED_BYTES_MAX,
  promoteLagMax: DEFAULT_PROMOTE_LAG_MAX,
});

/** Largest byte bound accepted (1 GiB): more would let one peer's backlog exhaust another's memory. */
export const PEER_RAFT_BYTES_MAX = 1024 * 1024 * 1024;

/**
 * Checks the `raft` section of a config file (absent, or any of its fields absent: the default) and
 * returns the full limits; `bad(field, what)` builds the error for the first wrong field.
 */
export function validatePeerRaftLimits(
  value: unknown,
  bad: (field: string, what: string) => Error,
): PeerRaftLimits {
  if (value === undefined) return { ...PEER_RAFT_LIMITS_DEFAULT };
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("raft", "must be an object");
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!Object.hasOwn(PEER_RAFT_LIMITS_DEFAULT, key)) throw bad(`raft.${key}`, "is not a raft setting");
  }
  const int = (name: keyof PeerRaftLimits, min: number, max: number): number => {
    const v = o[name];
    if (v === undefined) return PEER_RAFT_LIMITS_DEFAULT[name];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max)
      throw bad(`raft.${name}`, `must be an integer in ${min}..${max}`);
    return v;
  };
  return {
    inflightBytesMax: int("inflightBytesMax", 1, PEER_RAFT_BYTES_MAX),
    uncommittedBytesMax: int("uncommittedBytesMax", 1, PEER_RAFT_BYTES_MAX),
    promoteLagMax: int("promoteLagMax", 0, Number.MAX_SAFE_INTEGER),
  };
}
