/**
 * What a new ring asks the peers to do (DESIGN §4, rebalance while serving): for each partition
 * whose replica set changed, who must receive it, whom it can copy from, and who may drop it once
 * every receiver has confirmed. Pure: the rebalance runner in src/replication streams by this list.
 *
 * Sources are the old holders that stay first (they keep serving and are not going away), then the
 * ones that leave; a leaver drops its copy only after all receivers confirm, so an acknowledged key
 * always has its old holders until its new ones hold it.
 */
import { RingError } from "./ring-error.js";
import type { Ring } from "./ring.js";

export interface PartitionMove {
  partition: number;
  /** Peers that hold the partition in the new ring but not in the old one. */
  receivers: string[];
  /** Old holders to copy from, in order of preference. */
  sources: string[];
  /** Old holders not in the new ring's replica set: they drop the partition after receivers confirm. */
  leavers: string[];
}

export function partitionMoves(before: Ring, after: Ring): PartitionMove[] {
  if (before.partPower !== after.partPower) {
    throw new RingError("INVALID_ARGUMENT", "rings of different partition powers do not compare");
  }
  const moves: PartitionMove[] = [];
  for (let p = 0; p < after.partitions; p++) {
    const was = before.primaries(p).map((x) => x.id);
    const now = after.primaries(p).map((x) => x.id);
    const receivers = now.filter((id) => !was.includes(id));
    const leavers = was.filter((id) => !now.includes(id));
    if (receivers.length === 0 && leavers.length === 0) continue;
    const staying = was.filter((id) => now.includes(id));
    moves.push({ partition: p, receivers, sources: [...staying, ...leavers], leavers });
  }
  return moves;
}
