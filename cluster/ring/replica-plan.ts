/**
 * The replica plan: how many replicas of every partition each zone and each peer should hold, and
 * how many partition-replicas each peer should carry in total. It follows Swift's
 * `_build_weighted_replicas_by_tier`, `_build_wanted_replicas_by_tier`, `_build_replica_plan` and
 * `_set_parts_wanted` for a two-level tree (zone, then peer), with one difference: dispersion comes
 * first (Swift with unlimited overload). A zone that is heavy by weight but alone cannot take two
 * replicas of a partition while another zone can take one, because losing one zone must never take
 * out a quorum when the topology allows it; weights decide the split inside those bounds.
 *
 * Replicanths: a tier's expected number of replicas of one partition (a real number). A tier's
 * `min`/`max` bound how many replicas of any single partition it may hold.
 */
import { RingError } from "./ring-error.js";

/** A peer as the plan sees it: a slot index, its zone and a positive weight. */
export interface PlanDevice {
  slot: number;
  zone: string;
  weight: number;
}

export interface TierPlan {
  /** Fewest replicas of one partition this tier should hold. */
  min: number;
  /** Expected replicas of one partition (replicanths). */
  target: number;
  /** Most replicas of one partition this tier may hold. */
  max: number;
}

export interface ReplicaPlan {
  zones: Map<string, TierPlan>;
  /** By device slot. */
  devices: Map<number, TierPlan>;
  /** Partition-replicas each device slot should carry; sums to partitions × replicas. */
  partsWanted: Map<number, number>;
  /** Partition-replicas each zone should carry. */
  zoneParts: Map<string, number>;
}

/** Float tolerance of Swift's planner: replicanths within this of an integer are that integer. */
const EPSILON = 1e-10;
/** The spreading loops converge in a few rounds; this bounds them if arithmetic ever does not. */
const SPREAD_ROUNDS_MAX = 1000;

/** A tier with no plan (a zone of only zero-weight peers) may hold nothing. */
export const EMPTY_TIER: TierPlan = { min: 0, target: 0, max: 0 };

export function buildReplicaPlan(
  devices: readonly PlanDevice[],
  replicas: number,
  partitions: number,
): ReplicaPlan {
  if (devices.length < replicas) {
    throw new RingError(
      "TOO_FEW_PEERS",
      `${replicas} replicas need ${replicas} weighted peers, have ${devices.length}`,
    );
  }
  for (const d of devices) {
    if (!(d.weight > 0) || !Number.isFinite(d.weight))
      throw new RingError("INVALID_ARGUMENT", "plan needs positive weights");
  }
  const weighted = weightedReplicas(devices, replicas);
  const byZone = new Map<string, PlanDevice[]>();
  for (const d of devices) {
    const list = byZone.get(d.zone);
    if (list === undefined) byZone.set(d.zone, [d]);
    else list.push(d);
  }
  const zoneNames = [...byZone.keys()].sort();
  const zoneCount = zoneNames.length;

  // Most dispersed bounds (Swift's max replicas by tier with a float bound): N/Z per zone, and per
  // device its zone's share over the zone's devices, never above one.
  const zoneChildren: SpreadChild[] = zoneNames.map((z) => {
    const members = byZone.get(z)!;
    const share = replicas / zoneCount;
    return {
      key: z,
      weighted: members.reduce((s, d) => s + weighted.get(d.slot)!, 0),
      devices: members.length,
      min: Math.floor(share),
      max: Math.ceil(share),
    };
  });
  const zoneWanted = spread(replicas, zoneChildren);

  const zones = new Map<string, TierPlan>();
  const devicePlans = new Map<number, TierPlan>();
  for (const z of zoneNames) {
    const members = byZone.get(z)!;
    const wantedZ = zoneWanted.get(z)!;
    zones.set(z, tierPlan(wantedZ));
    const perDevice = Math.min(1, replicas / zoneCount / members.length);
    const devWanted = spread(
      wantedZ,
      members.map((d) => ({
        key: String(d.slot),
        weighted: weighted.get(d.slot)!,
        devices: 1,
        min: Math.floor(perDevice),
        max: Math.ceil(perDevice),
      })),
    );
    for (const d of members) devicePlans.set(d.slot, tierPlan(devWanted.get(String(d.slot))!));
  }

  // Whole partition-replicas, top-down so every level sums exactly (Swift's _set_parts_wanted).
  const total = replicas * partitions;
  const zoneParts = apportion(
    total,
    zoneNames.map((z) => ({ key: z, target: zones.get(z)!.target * partitions })),
  );
  const partsWanted = new Map<number, number>();
  for (const z of zoneNames) {
    const members = byZone.get(z)!;
    const split = apportion(
      zoneParts.get(z)!,
      members.map((d) => ({ key: String(d.slot), target: devicePlans.get(d.slot)!.target * partitions })),
    );
    for (const d of members) partsWanted.set(d.slot, split.get(String(d.slot))!);
  }
  return { zones, devices: devicePlans, partsWanted, zoneParts };
}

function tierPlan(target: number): TierPlan {
  return { min: Math.floor(target + EPSILON), target, max: Math.ceil(target - EPSILON) };
}

/**
 * Each device's replicanths by weight alone, capped at one (a peer holds a partition at most once);
 * what the cap cuts off goes to the others in proportion to what they have.
 */
function weightedReplicas(devices: readonly PlanDevice[], replicas: number): Map<number, number> {
  const totalWeight = devices.reduce((s, d) => s + d.weight, 0);
  const out = new Map<number, number>();
  for (const d of devices) out.set(d.slot, Math.min(1, (d.weight * replicas) / totalWeight));
  for (let round = 0; round < SPREAD_ROUNDS_MAX; round++) {
    let sum = 0;
    for (const v of out.values()) sum += v;
    const remaining = replicas - sum;
    if (remaining < EPSILON) return out;
    const room = devices.filter((d) => out.get(d.slot)! < 1);
    const roomSum = room.reduce((s, d) => s + out.get(d.slot)!, 0);
    const grow = remaining / roomSum;
    if (!Number.isFinite(grow)) {
      // Every peer with room has (next to) nothing: share what is left equally among them.
      for (const d of room) out.set(d.slot, Math.min(1, out.get(d.slot)! + remaining / room.length));
      continue;
    }
    for (const d of room) out.set(d.slot, Math.min(1, out.get(d.slot)! * (grow + 1)));
  }
  throw new RingError("INVALID_RING", "weighted replicanths did not converge");
}

interface SpreadChild {
  key: string;
  weighted: number;
  /** Devices under this child: it can never hold more replicas of one partition than that. */
  devices: number;
  /** Dispersion bounds. */
  min: number;
  max: number;
}

/**
 * Splits `replicanths` among children in proportion to their weighted replicanths, clamped into
 * their dispersion bounds and device counts, re-spreading what the clamps add or cut until the sum
 * is exact (Swift's `place_replicas`). Only when the dispersed maximum cannot hold everything (too
 * few zones) may a child exceed it, up to its device count.
 */
function spread(replicanths: number, children: readonly SpreadChild[]): Map<string, number> {
  const placed = new Map<string, number>(children.map((c) => [c.key, 0]));
  let remaining = replicanths;
  let active: readonly SpreadChild[] = children;
  let deviceLimited = false;
  for (let round = 0; round < SPREAD_ROUNDS_MAX; round++) {
    const activeWeight = active.reduce((s, c) => s + c.weighted, 0);
    const scale = remaining / activeWeight;
    const even = !Number.isFinite(scale); // weights too small to divide by: spread evenly instead
    for (const c of active) {
      let r = placed.get(c.key)! + (even ? remaining / active.length : c.weighted * scale);
      if (r < c.min) r = c.min;
      else if (r > c.max && !deviceLimited) r = c.max;
      if (r > c.devices) r = c.devices;
      placed.set(c.key, r);
    }
    let sum = 0;
    for (const v of placed.values()) sum += v;
    remaining = replicanths - sum;
    if (remaining < -EPSILON) {
      active = children.filter((c) => placed.get(c.key)! > c.min);
    } else if (remaining > EPSILON) {
      active = children.filter((c) => placed.get(c.key)! < c.devices && placed.get(c.key)! < c.max);
      if (active.length === 0) {
        deviceLimited = true;
        active = children.filter((c) => placed.get(c.key)! < c.devices);
      }
    } else {
      return placed;
    }
    if (active.length === 0) break;
  }
  throw new RingError(
    "INVALID_RING",
    `cannot spread ${replicanths} replicanths over ${children.length} tiers`,
  );
}

/**
 * Splits an integer total among children by real-valued targets: each gets the floor of its target
 * (never more than what is left), then the rest goes one at a time by largest remainder, ties by key,
 * so the result is deterministic and sums exactly to `total`.
 */
function apportion(total: number, children: readonly { key: string; target: number }[]): Map<string, number> {
  const out = new Map<string, number>();
  let left = total;
  for (const c of children) {
    const share = Math.min(left, Math.floor(c.target + EPSILON));
    out.set(c.key, share);
    left -= share;
  }
  const order = [...children].sort((a, b) => {
    const ra = a.target - out.get(a.key)!;
    const rb = b.target - out.get(b.key)!;
    return rb - ra || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  });
  for (let i = 0; left > 0 && order.length > 0; i = (i + 1) % order.length) {
    out.set(order[i]!.key, out.get(order[i]!.key)! + 1);
    left -= 1;
  }
  return out;
}
