/** Shared helpers of the ring tests: a builder whose every operation is followed by validate(). */
import { RingBuilder, type RebalanceResult } from "../../cluster/ring/ring-builder.js";
import type { RingState } from "../../cluster/ring/ring-state.js";

export const HOUR_MS = 3_600_000;

/** Wraps a builder so each mutation validates the ring at once (Swift's tests call validate() after every change). */
export class CheckedBuilder {
  readonly b: RingBuilder;
  nowMs = 1_700_000_000_000;

  constructor(partPower: number, replicas: number, minPartHours: number) {
    this.b = RingBuilder.create({ partPower, replicas, minPartHours });
    this.b.validate();
  }

  add(id: string, zone: string, weight = 100): this {
    this.b.addPeer({ id, zone, weight });
    this.b.validate();
    return this;
  }

  remove(id: string): this {
    this.b.removePeer(id);
    this.b.validate();
    return this;
  }

  weight(id: string, weight: number): this {
    this.b.setWeight(id, weight);
    this.b.validate();
    return this;
  }

  /** Advances the injected clock by `hours`, then rebalances. */
  rebalance(hours = 0): RebalanceResult {
    this.nowMs += Math.round(hours * HOUR_MS);
    const r = this.b.rebalance(this.nowMs);
    this.b.validate();
    return r;
  }
}

/** Partition-replicas held per peer id. */
export function partsByPeer(state: RingState): Map<string, number> {
  const out = new Map<string, number>();
  for (const row of state.table!)
    for (const s of row) out.set(state.slots[s]!.id, (out.get(state.slots[s]!.id) ?? 0) + 1);
  return out;
}

/** Peer ids holding each partition, as sets, from a state. */
export function holders(state: RingState): Set<string>[] {
  const partitions = 2 ** state.partPower;
  return Array.from(
    { length: partitions },
    (_, p) => new Set(state.table!.map((row) => state.slots[row[p]!]!.id)),
  );
}

/** Independently of the builder's own count: replicas that changed peer, total and per partition. */
export function movement(
  before: RingState,
  after: RingState,
): { total: number; maxPerPartition: number; perPartition: number[] } {
  const a = holders(before);
  const b = holders(after);
  const perPartition = a.map((set, p) => [...b[p]!].filter((id) => !set.has(id)).length);
  return {
    total: perPartition.reduce((s, n) => s + n, 0),
    maxPerPartition: Math.max(0, ...perPartition),
    perPartition,
  };
}
