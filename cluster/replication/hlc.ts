/**
 * A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): timestamps close to
 * physical time that still respect causality when clocks disagree. A stamp is (wallMs, logical,
 * peer); stamps are totally ordered by wallMs, then logical, then peer id, so two peers never issue
 * equal stamps and every replica orders concurrent writes the same way.
 *
 * Physical time is injected (`physicalNowMs`), never read from a global clock. A remote stamp too far
 * ahead of the local clock is refused rather than adopted: one peer with a wild clock must not drag
 * every other clock forward (and with it every last-writer-wins decision).
 */
import { ReplicationError } from "./replication-error.js";

export interface HlcStamp {
  /** Milliseconds since the epoch, as the issuing peer's HLC saw them. */
  wallMs: number;
  /** Orders events within one wallMs. */
  logical: number;
  /** The issuing peer: breaks ties, so stamps of distinct peers are never equal. */
  peer: string;
}

/** Far more than any burst within one millisecond; reaching it means the physical clock stalled. */
export const LOGICAL_MAX = 0xffff_ffff;
export const PEER_ID_BYTES_MAX = 128;
export const DEFAULT_MAX_DRIFT_MS = 60_000;

/** Total order of stamps: wallMs, then logical, then peer id. */
export function compareStamps(a: HlcStamp, b: HlcStamp): number {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0;
}

export const maxStamp = (a: HlcStamp, b: HlcStamp): HlcStamp => (compareStamps(a, b) >= 0 ? a : b);
export const minStamp = (a: HlcStamp, b: HlcStamp): HlcStamp => (compareStamps(a, b) <= 0 ? a : b);
export const stampsEqual = (a: HlcStamp, b: HlcStamp): boolean => compareStamps(a, b) === 0;

/** Refuses a stamp that could not have been issued (for stamps decoded from the network or disk). */
export function checkStamp(s: HlcStamp, what = "stamp"): void {
  const problem = stampProblem(s);
  if (problem !== undefined) throw new ReplicationError("INVALID_RECORD", `${what}: ${problem}`);
}

/**
 * What makes `s` a stamp that could not have been issued, or undefined. No allocation for a sound
 * stamp: it runs for every stamp of every record decoded, several per replicated write.
 */
export function stampProblem(s: HlcStamp): string | undefined {
  if (typeof s !== "object" || s === null) return "not an object";
  if (!Number.isSafeInteger(s.wallMs) || s.wallMs < 0)
    return `wallMs ${String(s.wallMs)} is not a non-negative integer`;
  if (!Number.isInteger(s.logical) || s.logical < 0 || s.logical > LOGICAL_MAX)
    return `logical ${String(s.logical)} out of range`;
  if (typeof s.peer !== "string" || s.peer.length === 0) return "peer must be a non-empty string";
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a lone surrogate encodes as U+FFFD, 3 bytes): a short
  // peer id needs no counting.
  if (s.peer.length > PEER_ID_BYTES_MAX / 3 && Buffer.byteLength(s.peer, "utf8") > PEER_ID_BYTES_MAX)
    return `peer is longer than ${PEER_ID_BYTES_MAX} bytes`;
  return undefined;
}

export class HybridClock {
  private wallMs = 0;
  private logical = 0;

  readonly peer: string;
  private readonly physicalNowMs: () => number;
  private readonly maxDriftMs: number;

  constructor(options: {
    peer: string;
    physicalNowMs: () => number;
    /** Remote stamps further ahead of local physical time than this are refused. */
    maxDriftMs?: number;
    /** The last stamp issued before a restart (persisted): stamps never go back behind it. */
    resumeFrom?: HlcStamp;
  }) {
    this.peer = options.peer;
    this.physicalNowMs = options.physicalNowMs;
    this.maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    checkStamp({ wallMs: 0, logical: 0, peer: this.peer }, "peer");
    if (!Number.isSafeInteger(this.maxDriftMs) || this.maxDriftMs < 0) {
      throw new ReplicationError("INVALID_ARGUMENT", "maxDriftMs must be a non-negative integer");
    }
    if (options.resumeFrom !== undefined) {
      checkStamp(options.resumeFrom, "resumeFrom");
      this.wallMs = options.resumeFrom.wallMs;
      this.logical = options.resumeFrom.logical;
    }
  }

  /** A stamp for a local event (a write this peer coordinates): later than every stamp seen so far. */
  now(): HlcStamp {
    const pt = this.physical();
    if (pt > this.wallMs) {
      this.wallMs = pt;
      this.logical = 0;
    } else {
      this.tick(this.logical + 1);
    }
    return this.stamp();
  }

  /**
   * Takes in a stamp received from another peer so later local stamps follow it; returns the stamp
   * of the receive event. Refuses (CLOCK_DRIFT, clock unchanged) a stamp more than maxDriftMs ahead
   * of local physical time.
   */
  observe(remote: HlcStamp): HlcStamp {
    checkStamp(remote, "remote stamp");
    const pt = this.physical();
    if (remote.wallMs > pt + this.maxDriftMs) {
      throw new ReplicationError(
        "CLOCK_DRIFT",
        `stamp from ${remote.peer} is ${remote.wallMs - pt} ms ahead of the local clock (at most ${this.maxDriftMs})`,
      );
    }
    const wall = Math.max(this.wallMs, remote.wallMs, pt);
    let logical: number;
    if (wall === this.wallMs && wall === remote.wallMs) logical = Math.max(this.logical, remote.logical) + 1;
    else if (wall === this.wallMs) logical = this.logical + 1;
    else if (wall === remote.wallMs) logical = remote.logical + 1;
    else logical = 0;
    if (logical > LOGICAL_MAX) throw new ReplicationError("CLOCK_OVERFLOW", "HLC logical counter overflow");
    this.wallMs = wall;
    this.logical = logical;
    return this.stamp();
  }

  /** The latest stamp issued or observed (without issuing a new one). */
  last(): HlcStamp {
    return this.stamp();
  }

  private tick(logical: number): void {
    if (logical > LOGICAL_MAX) throw new ReplicationError("CLOCK_OVERFLOW", "HLC logical counter overflow");
    this.logical = logical;
  }

  private physical(): number {
    const pt = this.physicalNowMs();
    if (!Number.isSafeInteger(pt) || pt < 0) {
      throw new ReplicationError(
        "INVALID_ARGUMENT",
        `physical clock returned ${pt}, not a non-negative integer`,
      );
    }
    return pt;
  }

  private stamp(): HlcStamp {
    return { wallMs: this.wallMs, logical: this.logical, peer: this.peer };
  }
}
