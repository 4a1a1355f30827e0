/**
 * The ring builder (Swift's RingBuilder, for peers): partitions × replicas assigned to peers so that
 * a partition's replicas sit on distinct peers, in distinct zones first, balanced by weight. A
 * rebalance moves as few partition-replicas as it can, at most one replica of any partition per
 * rebalance, and none of a partition that moved less than `minPartHours` ago, except replicas on
 * removed peers, which must all move at once. Time is injected (`nowMs`); the builder never reads a
 * clock and is deterministic: the same state and time give the same ring on every peer.
 *
 * The algorithm is Swift's (`rebalance`: gather from removed peers, gather what breaks dispersion,
 * then up to three rounds of gathering from overweight peers and reassigning to the roomiest zone and
 * peer), written anew for a two-level tree of zones and peers.
 */
import { partitionCount } from "./partition.js";
import { buildReplicaPlan, EMPTY_TIER, type PlanDevice, type ReplicaPlan } from "./replica-plan.js";
import { RingError } from "./ring-error.js";
import {
  checkName,
  checkPeer,
  checkShape,
  checkWeight,
  copyRingState,
  LAST_MOVE_HOURS_MAX,
  NO_SLOT,
  SLOTS_MAX,
  U53_MAX,
  validateRingState,
  ZONE_BYTES_MAX,
  type RingPeer,
  type RingState,
} from "./ring-state.js";
import { Ring } from "./ring.js";

export interface RingShape {
  /** Partitions = 2^partPower, fixed for the ring's life. */
  partPower: number;
  /** Replicas of every partition (N). */
  replicas: number;
  minPartHours: number;
}

export interface RebalanceResult {
  /** Partition-replicas whose peer changed (every one on the first build). */
  moved: number;
  /**
   * Most replicas of any one partition that moved, not counting replicas taken off removed peers
   * (0 on the first build, which places rather than moves). At most 1 by construction.
   */
  maxReplicasMovedPerPartition: number;
  /** Peers removed by this rebalance. */
  removedPeers: string[];
  /** Balance afterwards (percent; see ring-report.ts). */
  balance: number;
  /** False when minPartHours (or the topology) left some peer over its share; rebalance again later. */
  finished: boolean;
}

const HOUR_MS = 3_600_000;
/** Swift's MAX_BALANCE_GATHER_COUNT: later rounds rarely help and each costs a pass over the ring. */
const BALANCE_ROUNDS_MAX = 3;

export class RingBuilder {
  private s: RingState;

  private constructor(state: RingState) {
    this.s = state;
  }

  static create(shape: RingShape): RingBuilder {
    checkShape(shape.partPower, shape.replicas, shape.minPartHours);
    const partitions = partitionCount(shape.partPower);
    return new RingBuilder({
      version: 0,
      partPower: shape.partPower,
      replicas: shape.replicas,
      minPartHours: shape.minPartHours,
      slots: [],
      table: null,
      // Never moved: every partition may move on the first rebalance.
      lastPartMoves: new Uint8Array(partitions).fill(LAST_MOVE_HOURS_MAX),
      lastMovesEpochMs: 0,
      lastGatherStart: 0,
    });
  }

  /** A builder over a copy of `state`, which must pass validate(). */
  static fromState(state: RingState): RingBuilder {
    validateRingState(state);
    return new RingBuilder(copyRingState(state));
  }

  /** A copy of the whole state (for the codec and the control state). */
  toState(): RingState {
    return copyRingState(this.s);
  }

  get version(): number {
    return this.s.version;
  }
  get partPower(): number {
    return this.s.partPower;
  }
  get replicas(): number {
    return this.s.replicas;
  }
  get minPartHours(): number {
    return this.s.minPartHours;
  }
  get partitions(): number {
    return partitionCount(this.s.partPower);
  }

  /** Peers on the ring (those marked for removal excluded), in slot order. */
  peers(): RingPeer[] {
    return this.s.slots
      .filter((s) => s !== null && !s.removing)
      .map((s) => ({ id: s!.id, zone: s!.zone, weight: s!.weight }));
  }

  /** Adds a peer; it gets partitions at the next rebalance. Reuses the lowest free slot. */
  addPeer(peer: RingPeer): void {
    checkPeer(peer, "peer");
    if (this.s.slots.some((s) => s !== null && s.id === peer.id)) {
      throw new RingError("INVALID_ARGUMENT", `peer ${peer.id} is already on the ring`);
    }
    const free = this.s.slots.indexOf(null);
    const slot = { id: peer.id, zone: peer.zone, weight: peer.weight, removing: false };
    if (free >= 0) this.s.slots[free] = slot;
    else if (this.s.slots.length >= SLOTS_MAX)
      throw new RingError("INVALID_ARGUMENT", `the ring holds ${SLOTS_MAX} peers at most`);
    else this.s.slots.push(slot);
    this.bump();
  }

  /** Changes a peer's weight; 0 drains it over the next rebalances, minPartHours permitting. */
  setWeight(id: string, weight: number): void {
    checkWeight(weight, "weight");
    this.live(id).weight = weight;
    this.bump();
  }

  setZone(id: string, zone: string): void {
    checkName(zone, ZONE_BYTES_MAX, "zone");
    this.live(id).zone = zone;
    this.bump();
  }

  /**
   * Changes the replica count N (a cluster growing from one peer to three, or shrinking below N).
   * A new replica row starts unassigned and the next rebalance places all of it (like a first build,
   * for that row only); fewer replicas drop the last rows, whose peers simply stop being primaries.
   */
  setReplicas(replicas: number): void {
    checkShape(this.s.partPower, replicas, this.s.minPartHours);
    if (replicas === this.s.replicas) return;
    if (this.s.table !== null) {
      const partitions = partitionCount(this.s.partPower);
      const rows = this.s.table.slice(0, replicas);
      while (rows.length < replicas) rows.push(new Uint16Array(partitions).fill(NO_SLOT));
      this.s.table = rows;
    }
    this.s.replicas = replicas;
    this.bump();
  }

  /** Marks a peer for removal: the next rebalance moves all of its partitions away and frees its slot. */
  removePeer(id: string): void {
    this.live(id).removing = true;
    this.bump();
  }

  /** Marks every partition as moved long ago, so the next rebalance may move any of them. */
  pretendMinPartHoursPassed(): void {
    this.s.lastPartMoves.fill(LAST_MOVE_HOURS_MAX);
    this.bump();
  }

  /** Every invariant of the state (see ring-state.ts); after a rebalance, also that it is settled. */
  validate(): void {
    validateRingState(this.s, this.s.table !== null && !this.s.slots.some((s) => s?.removing));
  }

  /** The lookup view of the current assignment. */
  ring(): Ring {
    if (this.s.table === null) throw new RingError("NOT_BUILT", "the ring was never rebalanced");
    return new Ring(this.s);
  }

  rebalance(nowMs: number): RebalanceResult {
    if (!Number.isInteger(nowMs) || nowMs < 0 || nowMs > U53_MAX) {
      throw new RingError("INVALID_ARGUMENT", `nowMs must be an integer in 0..2^53, got ${nowMs}`);
    }
    const run = new Rebalance(this.s);
    const result = run.execute(nowMs);
    this.s = run.state;
    this.bump();
    return result;
  }

  private live(id: string) {
    const slot = this.s.slots.find((s) => s !== null && s.id === id && !s.removing);
    if (slot === undefined || slot === null)
      throw new RingError("INVALID_ARGUMENT", `no peer ${id} on the ring`);
    return slot;
  }

  private bump(): void {
    if (this.s.version >= U53_MAX) throw new RingError("INVALID_RING", "ring version overflow");
    this.s.version += 1;
  }
}

/** One rebalance over a working copy, so a failure half-way leaves the builder's state untouched. */
class Rebalance {
  readonly state: RingState;
  private readonly partitions: number;
  private readonly replicas: number;
  private readonly table: Uint16Array[];
  /** Partition-replicas each slot holds now. */
  private readonly parts: number[];
  /** What each slot still wants (negative: it should give some away). */
  private readonly partsWanted: number[];
  /** Partitions moved during this rebalance: none of them moves twice. */
  private readonly movedNow: Uint8Array;
  private plan!: ReplicaPlan;
  /** Weighted peers that are staying, the only ones that receive partitions. */
  private receivers: PlanDevice[] = [];
  private readonly zoneOf: string[];
  private prng: number;

  constructor(state: RingState) {
    this.state = copyRingState(state);
    this.partitions = partitionCount(state.partPower);
    this.replicas = state.replicas;
    const firstBuild = this.state.table === null;
    this.table =
      this.state.table ??
      Array.from({ length: this.replicas }, () => new Uint16Array(this.partitions).fill(NO_SLOT));
    this.state.table = this.table;
    const slotCount = this.state.slots.length;
    this.parts = new Array<number>(slotCount).fill(0);
    this.partsWanted = new Array<number>(slotCount).fill(0);
    this.zoneOf = this.state.slots.map((s) => (s === null ? "" : s.zone));
    this.movedNow = new Uint8Array(this.partitions);
    if (!firstBuild) {
      // A row added by setReplicas is still unassigned (NO_SLOT) until this rebalance fills it.
      for (const row of this.table) for (const s of row) if (s !== NO_SLOT) this.parts[s]! += 1;
    }
    this.prng = mix32(state.version, 0x9e3779b9);
  }

  execute(nowMs: number): RebalanceResult {
    const s = this.state;
    this.receivers = [];
    s.slots.forEach((slot, i) => {
      if (slot !== null && !slot.removing && slot.weight > 0)
        this.receivers.push({ slot: i, zone: slot.zone, weight: slot.weight });
    });
    if (this.receivers.length < this.replicas) {
      throw new RingError(
        "TOO_FEW_PEERS",
        `${this.replicas} replicas need ${this.replicas} weighted peers that stay, have ${this.receivers.length}`,
      );
    }
    const before = this.table.map((row) => new Uint16Array(row));
    const wasBuilt = !before[0]!.includes(NO_SLOT);
    this.ageLastMoves(nowMs);
    this.plan = buildReplicaPlan(this.receivers, this.replicas, this.partitions);
    this.setPartsWanted();

    const gathered = new Map<number, number[]>();
    this.gatherUnassigned(gathered);
    const removedSlots = this.gatherFromRemoved(gathered);
    this.gatherForDispersion(gathered);
    const removedPeers = removedSlots.map((i) => s.slots[i]!.id);
    for (const i of removedSlots) s.slots[i] = null;
    while (s.slots.length > 0 && s.slots[s.slots.length - 1] === null) s.slots.pop();

    let gatheredAny = false;
    for (let round = 0; round < BALANCE_ROUNDS_MAX; round++) {
      this.gatherForBalance(gathered, round === 0);
      if (gathered.size === 0) break;
      gatheredAny = true;
      this.reassign(gathered);
      gathered.clear();
      if (this.settled()) break;
    }

    // A partition that moved now has "0 hours since": from now, not from the last whole hour the
    // epoch kept (which would let it move again up to an hour early). Unmoved partitions lose the
    // fraction of an hour, which only errs towards waiting longer.
    if (gatheredAny) s.lastMovesEpochMs = Math.max(s.lastMovesEpochMs, nowMs);

    let moved = 0;
    let maxPerPartition = 0;
    const removed = new Set(removedSlots);
    for (let part = 0; part < this.partitions; part++) {
      let movedHere = 0;
      for (let r = 0; r < this.replicas; r++) {
        const was = before[r]![part]!;
        if (was === this.table[r]![part]) continue;
        moved += 1;
        if (wasBuilt && !removed.has(was)) movedHere += 1;
      }
      maxPerPartition = Math.max(maxPerPartition, movedHere);
    }
    const probe = new Ring(s);
    return {
      moved,
      maxReplicasMovedPerPartition: maxPerPartition,
      removedPeers,
      balance: probe.balance(),
      finished: this.settled(),
    };
  }

  /** Brings "hours since moved" up to `nowMs`, keeping the unspent part of an hour for next time. */
  private ageLastMoves(nowMs: number): void {
    const s = this.state;
    if (nowMs <= s.lastMovesEpochMs) return; // time never runs backwards for the ring
    const hours = Math.floor((nowMs - s.lastMovesEpochMs) / HOUR_MS);
    if (hours <= 0) return;
    const add = Math.min(hours, LAST_MOVE_HOURS_MAX);
    for (let p = 0; p < this.partitions; p++) {
      s.lastPartMoves[p] = Math.min(LAST_MOVE_HOURS_MAX, s.lastPartMoves[p]! + add);
    }
    s.lastMovesEpochMs += hours * HOUR_MS;
  }

  private canMove(part: number): boolean {
    return this.state.lastPartMoves[part]! >= this.state.minPartHours && this.movedNow[part] === 0;
  }

  private markMoved(part: number): void {
    this.movedNow[part] = 1;
  }

  private setPartsWanted(): void {
    const total = this.partitions * this.replicas;
    this.state.slots.forEach((slot, i) => {
      if (slot === null) return;
      const target = this.plan.partsWanted.get(i);
      // A peer with no weight wants to give everything away (Swift's "drain").
      this.partsWanted[i] = target === undefined ? -total : target - this.parts[i]!;
    });
  }

  private unassign(part: number, replica: number, gathered: Map<number, number[]>): void {
    const slot = this.table[replica]![part]!;
    this.table[replica]![part] = NO_SLOT;
    this.parts[slot]! -= 1;
    this.partsWanted[slot]! += 1;
    this.markMoved(part);
    const list = gathered.get(part);
    if (list === undefined) gathered.set(part, [replica]);
    else list.push(replica);
  }

  /** The first build: every replica of every partition needs a home. */
  private gatherUnassigned(gathered: Map<number, number[]>): void {
    for (let part = 0; part < this.partitions; part++) {
      for (let r = 0; r < this.replicas; r++) {
        if (this.table[r]![part] !== NO_SLOT) continue;
        this.markMoved(part);
        const list = gathered.get(part);
        if (list === undefined) gathered.set(part, [r]);
        else list.push(r);
      }
    }
  }

  /** Every replica on a removed peer moves now, whatever minPartHours says: the peer is going away. */
  private gatherFromRemoved(gathered: Map<number, number[]>): number[] {
    const removing: number[] = [];
    this.state.slots.forEach((slot, i) => {
      if (slot !== null && slot.removing) removing.push(i);
    });
    if (removing.length === 0) return removing;
    const isRemoving = new Set(removing);
    for (let part = 0; part < this.partitions; part++) {
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s !== NO_SLOT && isRemoving.has(s)) this.unassign(part, r, gathered);
      }
    }
    return removing;
  }

  /** Replicas that crowd a zone or sit on a peer the plan gives nothing (weight 0): one per partition. */
  private gatherForDispersion(gathered: Map<number, number[]>): void {
    const zoneCount = new Map<string, number>();
    for (let part = 0; part < this.partitions; part++) {
      if (!this.canMove(part)) continue;
      zoneCount.clear();
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s !== NO_SLOT) zoneCount.set(this.zoneOf[s]!, (zoneCount.get(this.zoneOf[s]!) ?? 0) + 1);
      }
      let pick = -1;
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s === NO_SLOT) continue;
        const zonePlan = this.plan.zones.get(this.zoneOf[s]!) ?? EMPTY_TIER;
        const devPlan = this.plan.devices.get(s) ?? EMPTY_TIER;
        if (zoneCount.get(this.zoneOf[s]!)! <= zonePlan.max && 1 <= devPlan.max) continue;
        if (pick < 0 || this.moreOverweight(s, this.table[pick]![part]!)) pick = r;
      }
      if (pick >= 0) this.unassign(part, pick, gathered);
    }
  }

  /**
   * Replicas on peers over their share. The first round takes only replicas whose move keeps the
   * partition as dispersed as the plan wants and that some peer elsewhere has room for (Swift's
   * `_gather_parts_for_balance_can_disperse`); every round then takes, per partition, the replica on
   * its most overweight peer (Swift's "forced" gather), which lets stuck placements unwind.
   */
  private gatherForBalance(gathered: Map<number, number[]>, disperseFirst: boolean): void {
    const P = this.partitions;
    const start =
      (this.state.lastGatherStart + Math.floor(P / 4) + (this.nextRandom() % (Math.floor(P / 2) + 1))) % P;
    this.state.lastGatherStart = start;
    if (disperseFirst) this.gatherDispersible(gathered, start);
    for (let offset = 0; offset < P; offset++) {
      const part = (start + offset) % P;
      if (!this.canMove(part)) continue;
      let pick = -1;
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s === NO_SLOT || this.partsWanted[s]! >= 0) continue;
        if (pick < 0 || this.moreOverweight(s, this.table[pick]![part]!)) pick = r;
      }
      if (pick >= 0) this.unassign(part, pick, gathered);
    }
  }

  private gatherDispersible(gathered: Map<number, number[]>, start: number): void {
    const P = this.partitions;
    // Room (positive wants) per zone among the peers that receive.
    const roomInZone = new Map<string, number>();
    const zonePeers = new Map<string, number[]>();
    for (const d of this.receivers) {
      roomInZone.set(d.zone, (roomInZone.get(d.zone) ?? 0) + Math.max(this.partsWanted[d.slot]!, 0));
      const list = zonePeers.get(d.zone);
      if (list === undefined) zonePeers.set(d.zone, [d.slot]);
      else list.push(d.slot);
    }
    const zoneCount = new Map<string, number>();
    const holds = new Set<number>();
    for (let offset = 0; offset < P; offset++) {
      const part = (start + offset) % P;
      if (!this.canMove(part)) continue;
      zoneCount.clear();
      holds.clear();
      const over: number[] = [];
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s === NO_SLOT) continue;
        holds.add(s);
        zoneCount.set(this.zoneOf[s]!, (zoneCount.get(this.zoneOf[s]!) ?? 0) + 1);
        if (this.partsWanted[s]! < 0) over.push(r);
      }
      over.sort((a, b) => this.compareOverweight(this.table[a]![part]!, this.table[b]![part]!));
      for (const r of over) {
        const s = this.table[r]![part]!;
        const zone = this.zoneOf[s]!;
        const zp = this.plan.zones.get(zone) ?? EMPTY_TIER;
        const dp = this.plan.devices.get(s) ?? EMPTY_TIER;
        const zc = zoneCount.get(zone)!;
        // A tier holding between its min and max replicas is where the plan wants it: stay.
        if ((zp.min <= zc && zc < zp.max) || (dp.min <= 1 && 1 < dp.max)) continue;
        if (dp.min > 0) continue; // the plan needs this very peer to hold every partition
        // The replica may go to another peer of its zone if the zone must keep it, to another zone
        // otherwise; only peers that do not hold the partition, in zones below their maximum for it,
        // count as room. (Swift counts room in the whole tier; counting only usable room keeps this
        // round from gathering replicas that can only land where they were.)
        let room = 0;
        if (zc - 1 < zp.min) {
          for (const p of zonePeers.get(zone) ?? [])
            if (!holds.has(p)) room += Math.max(this.partsWanted[p]!, 0);
        } else {
          for (const [z, zr] of roomInZone) {
            if (z !== zone && (zoneCount.get(z) ?? 0) < (this.plan.zones.get(z) ?? EMPTY_TIER).max)
              room += zr;
          }
        }
        if (room <= 0) continue;
        this.unassign(part, r, gathered);
        break;
      }
    }
  }

  /**
   * Places gathered replicas, partitions in a shuffled order: each replica goes to the zone with the
   * most room among those below their plan maximum for this partition, then to the peer of that zone
   * with the most room that does not hold the partition yet.
   */
  private reassign(gathered: Map<number, number[]>): void {
    const order = [...gathered.keys()].sort((a, b) => a - b);
    for (let i = order.length - 1; i > 0; i--) {
      const j = this.nextRandom() % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const roomInZone = new Map<string, number>();
    const room = new Map<number, number>();
    const peersOfZone = new Map<string, number[]>();
    for (const d of this.receivers) {
      const w = Math.max(this.partsWanted[d.slot]!, 0);
      room.set(d.slot, w);
      roomInZone.set(d.zone, (roomInZone.get(d.zone) ?? 0) + w);
      const list = peersOfZone.get(d.zone);
      if (list === undefined) peersOfZone.set(d.zone, [d.slot]);
      else list.push(d.slot);
    }
    const zones = [...peersOfZone.keys()].sort();
    const zoneCount = new Map<string, number>();
    const holds = new Set<number>();
    for (const part of order) {
      this.state.lastPartMoves[part] = 0;
      zoneCount.clear();
      holds.clear();
      for (let r = 0; r < this.replicas; r++) {
        const s = this.table[r]![part]!;
        if (s === NO_SLOT) continue;
        holds.add(s);
        zoneCount.set(this.zoneOf[s]!, (zoneCount.get(this.zoneOf[s]!) ?? 0) + 1);
      }
      for (const r of gathered.get(part)!) {
        let bestZone: string | undefined;
        let bestZoneRoom = -Infinity;
        let bestZoneTie = 0;
        zones.forEach((z, zi) => {
          if ((zoneCount.get(z) ?? 0) >= (this.plan.zones.get(z) ?? EMPTY_TIER).max) return;
          if (!peersOfZone.get(z)!.some((p) => !holds.has(p))) return;
          const zr = roomInZone.get(z)!;
          const tie = mix32(part, zi);
          if (zr > bestZoneRoom || (zr === bestZoneRoom && tie > bestZoneTie)) {
            bestZone = z;
            bestZoneRoom = zr;
            bestZoneTie = tie;
          }
        });
        // No zone below its maximum (a partition kept undispersed by minPartHours): any peer that
        // does not hold the partition, so replicas stay on distinct peers whatever happens.
        const candidates =
          bestZone === undefined ? this.receivers.map((d) => d.slot) : peersOfZone.get(bestZone)!;
        let best = -1;
        let bestRoom = -Infinity;
        let bestTie = 0;
        for (const p of candidates) {
          if (holds.has(p)) continue;
          const pr = room.get(p)!;
          const tie = mix32(part, p + 0x10000);
          if (pr > bestRoom || (pr === bestRoom && tie > bestTie)) {
            best = p;
            bestRoom = pr;
            bestTie = tie;
          }
        }
        if (best < 0) throw new RingError("INVALID_RING", `no peer can take partition ${part} replica ${r}`);
        this.table[r]![part] = best;
        holds.add(best);
        this.parts[best]! += 1;
        this.partsWanted[best]! -= 1;
        room.set(best, room.get(best)! - 1);
        const z = this.zoneOf[best]!;
        roomInZone.set(z, roomInZone.get(z)! - 1);
        zoneCount.set(z, (zoneCount.get(z) ?? 0) + 1);
      }
    }
  }

  /** Nothing left to give: no receiver over its share, and no draining peer still holding partitions. */
  private settled(): boolean {
    return this.state.slots.every(
      (slot, i) => slot === null || this.partsWanted[i]! >= 0 || this.parts[i] === 0,
    );
  }

  private compareOverweight(a: number, b: number): number {
    return this.partsWanted[a]! - this.partsWanted[b]! || a - b;
  }

  private moreOverweight(a: number, b: number): boolean {
    return this.compareOverweight(a, b) < 0;
  }

  private nextRandom(): number {
    this.prng = mix32(this.prng, 0x6d2b79f5);
    return this.prng;
  }
}

/** A 32-bit integer mix (murmur3's finalizer over two words): deterministic tie-breaks and shuffles. */
export function mix32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x85ebca6b, 0xcc9e2d51) ^ b;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
