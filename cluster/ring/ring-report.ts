/**
 * Balance and dispersion of a ring (Swift's `get_balance` and dispersion report), for tests and
 * for `lockbox ring show`.
 *
 * Balance of a peer: how far the partition-replicas it holds are from its share by weight, in
 * percent (+10 = 10% more than its share). A peer with weight 0 that still holds partitions shows
 * BALANCE_MAX. The ring's balance is the worst peer's absolute value.
 *
 * Dispersion: the share of partition-replicas "at risk", that is beyond the most replicas of one
 * partition a zone should hold if the partition were spread as widely as the zones allow
 * (ceil(N / zones)). 0 means every partition is as spread as the topology permits.
 */
import type { RingSlot } from "./ring-state.js";

export const BALANCE_MAX = 999.99;

export interface PeerBalance {
  id: string;
  zone: string;
  weight: number;
  /** Partition-replicas held. */
  parts: number;
  /** Partition-replicas its weight asks for (real-valued). */
  wanted: number;
  /** Percent over (+) or under (-) its share. */
  balance: number;
}

export interface BalanceReport {
  /** The worst peer's absolute balance, percent. */
  balance: number;
  peers: PeerBalance[];
}

export interface DispersionReport {
  /** Percent of partition-replicas beyond what full dispersion allows. */
  dispersion: number;
  /** Partition-replicas at risk (the numerator of `dispersion`). */
  partsAtRisk: number;
  /** Most replicas of one partition a zone may hold under full dispersion. */
  maxReplicasPerZone: number;
  /** Per zone: byReplicas[k] = partitions with exactly k replicas in that zone. */
  zones: { zone: string; byReplicas: number[] }[];
  /** Fewest distinct zones any partition spans. */
  minZonesPerPartition: number;
}

export function balanceReport(
  slots: readonly (RingSlot | null)[],
  table: readonly Uint16Array[],
  replicas: number,
  partitions: number,
): BalanceReport {
  const parts = new Array<number>(slots.length).fill(0);
  for (const row of table) for (const s of row) parts[s]! += 1;
  const totalWeight = slots.reduce((sum, s) => (s === null || s.removing ? sum : sum + s.weight), 0);
  const peers: PeerBalance[] = [];
  let worst = 0;
  slots.forEach((slot, i) => {
    if (slot === null) return;
    const wanted =
      totalWeight > 0 && !slot.removing ? (slot.weight * partitions * replicas) / totalWeight : 0;
    const balance = wanted === 0 ? (parts[i]! > 0 ? BALANCE_MAX : 0) : (100 * parts[i]!) / wanted - 100;
    worst = Math.max(worst, Math.abs(balance));
    peers.push({ id: slot.id, zone: slot.zone, weight: slot.weight, parts: parts[i]!, wanted, balance });
  });
  return { balance: worst, peers };
}

export function dispersionReport(
  slots: readonly (RingSlot | null)[],
  table: readonly Uint16Array[],
  replicas: number,
  partitions: number,
): DispersionReport {
  const weightedZones = new Set<string>();
  for (const s of slots) if (s !== null && !s.removing && s.weight > 0) weightedZones.add(s.zone);
  const maxPerZone = weightedZones.size === 0 ? 0 : Math.ceil(replicas / weightedZones.size);
  const zoneNames = [...new Set(slots.filter((s) => s !== null).map((s) => s!.zone))].sort();
  const zoneIndex = new Map(zoneNames.map((z, i) => [z, i]));
  const graph = zoneNames.map(() => new Array<number>(replicas + 1).fill(0));
  const count = new Array<number>(zoneNames.length).fill(0);
  let atRisk = 0;
  let minZones = partitions > 0 ? Infinity : 0;
  for (let p = 0; p < partitions; p++) {
    count.fill(0);
    for (const row of table) count[zoneIndex.get(slots[row[p]!]!.zone)!]! += 1;
    let risk = 0;
    let spanned = 0;
    count.forEach((c, zi) => {
      graph[zi]![c]! += 1;
      if (c > 0) spanned += 1;
      const allowed = weightedZones.has(zoneNames[zi]!) ? maxPerZone : 0;
      risk = Math.max(risk, c - allowed);
    });
    atRisk += risk;
    minZones = Math.min(minZones, spanned);
  }
  return {
    dispersion: partitions === 0 ? 0 : (100 * atRisk) / (partitions * replicas),
    partsAtRisk: atRisk,
    maxReplicasPerZone: maxPerZone,
    zones: zoneNames.map((zone, zi) => ({ zone, byReplicas: graph[zi]! })),
    minZonesPerPartition: minZones,
  };
}
