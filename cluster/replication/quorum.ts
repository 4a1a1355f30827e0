/**
 * Quorum arithmetic for writes and reads over a partition's N primaries (DESIGN §4): W = R =
 * floor(N/2) + 1, so every read quorum meets every write quorum in at least one replica.
 *
 * Counting is by primary "place", not by answer: each of the N primaries counts at most once,
 * either through its own answer or through one handoff peer that holds the copy meant for it while
 * it is down (Swift's hinted handoff). So duplicate answers, answers from peers that are neither a
 * primary nor a handoff standing for one, and a handoff claiming two places never inflate the count.
 */
import { ReplicationError } from "./replication-error.js";

/** floor(n/2) + 1: the smallest count any two of which overlap. */
export function majority(n: number): number {
  if (!Number.isInteger(n) || n < 1)
    throw new ReplicationError("INVALID_ARGUMENT", `replica count must be a positive integer, got ${n}`);
  return Math.floor(n / 2) + 1;
}

/** Why an answer did or did not count. */
export type AnswerOutcome =
  /** It filled a place that was empty: the count went up. */
  | "counted"
  /** The place was already filled (a repeat, or the primary and its handoff both answered). */
  | "duplicate"
  /** Not a primary of this partition, and not standing for one. */
  | "unknown-peer"
  /** A handoff claimed a place while it already fills another, or a primary claimed to stand in. */
  | "refused";

export class PlaceQuorum {
  readonly needed: number;
  private readonly primaries: readonly string[];
  /** Place (primary index) → the peer whose answer filled it. */
  private readonly filledBy = new Map<number, string>();
  /** Handoff peer → the place it fills. */
  private readonly standIns = new Map<string, number>();

  /** Counts answers for `primaries` until `needed` places are filled (default: a majority). */
  constructor(primaries: readonly string[], needed = majority(primaries.length)) {
    // One of these per replicated write: a scan of the few primaries, no Set and no closure.
    for (let i = 0; i < primaries.length; i++) {
      const p = primaries[i];
      if (typeof p !== "string" || p === "" || primaries.indexOf(p) !== i)
        throw new ReplicationError("INVALID_ARGUMENT", "primaries must be distinct non-empty peer ids");
    }
    if (!Number.isInteger(needed) || needed < 1 || needed > primaries.length) {
      throw new ReplicationError(
        "INVALID_ARGUMENT",
        `a quorum of ${needed} is impossible over ${primaries.length} primaries`,
      );
    }
    this.primaries = [...primaries];
    this.needed = needed;
  }

  /**
   * A successful answer from `peer`: a primary answering for itself, or (with `standsFor`) a handoff
   * peer answering for the primary whose copy it holds.
   */
  answer(peer: string, standsFor?: string): AnswerOutcome {
    const own = this.primaries.indexOf(peer);
    if (standsFor === undefined || standsFor === peer) {
      if (own < 0) return "unknown-peer";
      return this.fill(own, peer);
    }
    const place = this.primaries.indexOf(standsFor);
    if (place < 0) return "unknown-peer";
    if (own >= 0) return "refused"; // a primary holds its own copy, never another's
    const already = this.standIns.get(peer);
    if (already !== undefined && already !== place) return "refused";
    this.standIns.set(peer, place);
    return this.fill(place, peer);
  }

  /** Places filled so far. */
  get count(): number {
    return this.filledBy.size;
  }

  get reached(): boolean {
    return this.filledBy.size >= this.needed;
  }

  /** Distinct peers whose answers filled places. */
  peers(): string[] {
    return [...this.filledBy.values()];
  }

  /** Primaries whose place is still empty (a coordinator sends their copies to handoffs). */
  missing(): string[] {
    return this.primaries.filter((_, i) => !this.filledBy.has(i));
  }

  private fill(place: number, peer: string): AnswerOutcome {
    if (this.filledBy.has(place)) return "duplicate";
    this.filledBy.set(place, peer);
    return "counted";
  }
}

/** A write is acknowledged once W = majority(N) places report the record synced. */
export const writeQuorum = (primaries: readonly string[]): PlaceQuorum => new PlaceQuorum(primaries);

/** A read answers once R = majority(N) places have answered; R + W > N, so it sees every acknowledged write. */
export const readQuorum = (primaries: readonly string[]): PlaceQuorum => new PlaceQuorum(primaries);
