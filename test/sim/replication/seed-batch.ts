import type { ExecutionContext } from "ava";
import { runReplicationSeed } from "./replication-simulator.js";

/**
 * Runs replication seeds [start, start + count) on the correct code and fails on the first violation,
 * naming the seed, the checker and how to replay it.
 */
export async function runReplicationSeedBatch(
  t: ExecutionContext,
  start: number,
  count: number,
): Promise<void> {
  let acked = 0;
  let crashes = 0;
  let reclaimed = 0;
  let quarantines = 0;
  let hints = 0;
  for (let seed = start; seed < start + count; seed++) {
    const r = await runReplicationSeed({ seed });
    acked += r.stats.createsAcked;
    crashes += r.stats.crashes;
    reclaimed += r.stats.reclaimed;
    quarantines += r.stats.quarantines;
    hints += r.stats.hintsDelivered;
    if (!r.ok) {
      t.fail(
        `seed ${seed} violated ${r.violation!.checker}: ${r.violation!.detail}\nplan: ${r.plan}\nreplay: npm run sim:replication -- --seed ${seed} --trace`,
      );
      return;
    }
  }
  t.log(
    `${count} seeds ok from ${start}: creates acked ${acked}, crashes ${crashes}, handoff copies home ${hints}, tombstones reclaimed ${reclaimed}, partitions quarantined ${quarantines}`,
  );
  // The batch must have exercised what the checkers guard, or passing it means little.
  t.true(acked > count * 5, "creates were acknowledged");
  t.true(
    crashes > 0 && hints > 0 && reclaimed > 0 && quarantines > 0,
    "crashes, handoffs, reclaims and quarantines happened",
  );
}
