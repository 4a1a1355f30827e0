/**
 * The lookup view of a built ring: a partition's primaries, its handoff order, and the reports.
 * Immutable: it copies what it is built from, so a later rebalance of the builder cannot change the
 * answers of a ring a peer is serving with.
 */
import { createHash } from "node:crypto";
import { partitionCount } from "./partition.js";
import { RingError } from "./ring-error.js";
import { balanceReport, dispersionReport, type BalanceReport, type DispersionReport } from "./ring-report.js";
import { validateRingState, type RingPeer, type RingSlot, type RingState } from "./ring-state.js";

/** Swift's `get_more_nodes` walks at most 2^16 partitions: a bounded walk still meets every peer. */
const HANDOFF_WALK_MAX = 65_536;

export class Ring {
  readonly version: number;
  readonly partPower: number;
  readonly replicas: number;
  readonly partitions: number;
  private readonly slots: readonly (RingSlot | null)[];
  private readonly table: readonly Uint16Array[];
  private readonly zoneCount: number;
  private readonly assignedCount: number;

  constructor(state: RingState) {
    if (state.table === null) throw new RingError("NOT_BUILT", "the ring was never rebalanced");
    validateRingState(state); // lookups index by what the table says: it must be sound
    this.version = state.version;
    this.partPower = state.partPower;
    this.replicas = state.replicas;
    this.partitions = partitionCount(state.partPower);
    this.slots = state.slots.map((s) => (s === null ? null : Object.freeze({ ...s })));
    this.table = state.table.map((row) => new Uint16Array(row));
    const assigned = new Set<number>();
    for (const row of this.table) for (const s of row) assigned.add(s);
    this.assignedCount = assigned.size;
    this.zoneCount = new Set([...assigned].map((s) => this.slots[s]!.zone)).size;
  }

  /** The N peers holding `partition`, in replica order. */
  primaries(partition: number): RingPeer[] {
    this.checkPartition(partition);
    return this.table.map((row) => this.peer(row[partition]!));
  }

  /**
   * Every other peer, in the order a coordinator tries them when primaries are down (Swift's
   * `get_more_nodes`): walk the ring from a point fixed by the partition number and take the peers
   * met there, first those in zones the primaries do not use, then the rest, then peers holding no
   * partition yet. The order depends only on the partition and the assignment, so every peer computes
   * the same handoffs, and a rebalance changes them little.
   */
  handoffs(partition: number): RingPeer[] {
    this.checkPartition(partition);
    const used = new Set<number>();
    const usedZones = new Set<string>();
    for (const row of this.table) {
      used.add(row[partition]!);
      usedZones.add(this.slots[row[partition]!]!.zone);
    }
    const out: RingPeer[] = [];
    const step = Math.max(1, Math.floor(this.partitions / HANDOFF_WALK_MAX));
    const walk = this.partitions / step;
    const start = handoffStart(partition, this.partPower);
    const take = (s: number): void => {
      used.add(s);
      usedZones.add(this.slots[s]!.zone);
      out.push(this.peer(s));
    };
    for (let k = 0; k < walk && usedZones.size < this.zoneCount; k++) {
      const hp = (start + k * step) % this.partitions;
      for (const row of this.table) {
        const s = row[hp]!;
        if (!used.has(s) && !usedZones.has(this.slots[s]!.zone)) take(s);
      }
    }
    for (let k = 0; k < walk && used.size < this.assignedCount; k++) {
      const hp = (start + k * step) % this.partitions;
      for (const row of this.table) {
        const s = row[hp]!;
        if (!used.has(s)) take(s);
      }
    }
    // Peers on the ring holding nothing (not yet rebalanced, or weight 0): last, by id.
    const idle = this.slots
      .map((slot, i) => ({ slot, i }))
      .filter(({ slot, i }) => slot !== null && !slot.removing && !used.has(i))
      .sort((a, b) => (a.slot!.id < b.slot!.id ? -1 : 1));
    for (const { i } of idle) take(i);
    return out;
  }

  /** Peers on the ring, in slot order. */
  peers(): RingPeer[] {
    return this.slots.filter((s) => s !== null && !s.removing).map((s) => this.peerOf(s!));
  }

  /** Partitions `peerId` holds a replica of, ascending. */
  partitionsOf(peerId: string): number[] {
    const slot = this.slots.findIndex((s) => s !== null && s.id === peerId);
    if (slot < 0) return [];
    const out: number[] = [];
    for (let p = 0; p < this.partitions; p++) if (this.table.some((row) => row[p] === slot)) out.push(p);
    return out;
  }

  /** Balance in percent: how far the worst peer is from its share by weight (0 is perfect). */
  balance(): number {
    return this.balanceReport().balance;
  }

  balanceReport(): BalanceReport {
    return balanceReport(this.slots, this.table, this.replicas, this.partitions);
  }

  dispersionReport(): DispersionReport {
    return dispersionReport(this.slots, this.table, this.replicas, this.partitions);
  }

  private checkPartition(partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitions) {
      throw new RingError("INVALID_ARGUMENT", `partition ${partition} is outside 0..${this.partitions - 1}`);
    }
  }

  private peer(slot: number): RingPeer {
    return this.peerOf(this.slots[slot]!);
  }

  private peerOf(s: RingSlot): RingPeer {
    return { id: s.id, zone: s.zone, weight: s.weight };
  }
}

/** Where a partition's handoff walk begins: the top bits of SHA-256 of its number, as Swift does with MD5. */
function handoffStart(partition: number, partPower: number): number {
  if (partPower === 0) return 0;
  const digest = createHash("sha256").update(String(partition), "ascii").digest();
  return digest.readUInt32BE(0) >>> (32 - partPower);
}
