/**
 * Where a partition lives, as the replication code needs to know it: the ring's primaries and
 * handoff order, and which peers are believed up. The wiring implements it over the ring version in
 * the control state and the peer health it observes; `RingPlacement` builds one from a `Ring`.
 * Answers may be stale (a peer believed up can be down): the coordinator tolerates that by deadlines
 * and by trying the next handoff when a primary does not answer.
 */
import type { Ring } from "../../cluster/ring/index.js";
import { partitionOfKeyId } from "../../cluster/ring/index.js";

export interface PlacementView {
  /** The partition a key id belongs to (key-id.ts: from the id's own bits). */
  partitionOfKey(id: string): number;
  /** Number of partitions; partitions are 0..partitions-1. */
  readonly partitions: number;
  /** The N primaries of `partition`, in replica order. */
  primaries(partition: number): readonly string[];
  /** Every other peer, in the ring's deterministic handoff order. */
  handoffs(partition: number): readonly string[];
  /** Partitions `peer` is a primary of. */
  partitionsOf(peer: string): readonly number[];
  /** Whether `peer` is believed reachable now. */
  isUp(peer: string): boolean;
}

/** A PlacementView over one ring version; `isUp` comes from the caller (peer health). */
export class RingPlacement implements PlacementView {
  readonly partitions: number;
  private readonly primaryCache = new Map<number, readonly string[]>();
  private readonly handoffCache = new Map<number, readonly string[]>();
  private readonly partsOf = new Map<string, readonly number[]>();

  constructor(
    private readonly ring: Ring,
    private readonly clusterSalt: Uint8Array,
    readonly isUp: (peer: string) => boolean,
  ) {
    this.partitions = ring.partitions;
  }

  partitionOfKey(id: string): number {
    return partitionOfKeyId(this.clusterSalt, id, this.ring.partPower);
  }

  primaries(partition: number): readonly string[] {
    let p = this.primaryCache.get(partition);
    if (p === undefined) {
      p = Object.freeze(this.ring.primaries(partition).map((x) => x.id));
      this.primaryCache.set(partition, p);
    }
    return p;
  }

  handoffs(partition: number): readonly string[] {
    let h = this.handoffCache.get(partition);
    if (h === undefined) {
      h = Object.freeze(this.ring.handoffs(partition).map((x) => x.id));
      this.handoffCache.set(partition, h);
    }
    return h;
  }

  partitionsOf(peer: string): readonly number[] {
    let ps = this.partsOf.get(peer);
    if (ps === undefined) {
      ps = Object.freeze(this.ring.partitionsOf(peer));
      this.partsOf.set(peer, ps);
    }
    return ps;
  }
}
