import type { ExecutionContext } from "ava";
import { runSeed } from "./simulator.js";

/**
 * Runs seeds [start, start + count) on the mixed profiles of the correct core and fails the test on the
 * first violation, naming the seed, the checker and how to replay it.
 */
export function runSeedBatch(t: ExecutionContext, start: number, count: number): void {
  const profiles = new Map<string, number>();
  let acked = 0;
  for (let seed = start; seed < start + count; seed++) {
    const r = runSeed({ seed, profile: "mixed" });
    profiles.set(r.profile, (profiles.get(r.profile) ?? 0) + 1);
    acked += r.stats.writesAcked;
    if (!r.ok) {
      t.fail(
        `seed ${seed} [${r.profile}] violated ${r.violation!.checker}: ${r.violation!.detail}\nreplay: npm run sim -- --seed ${seed} --trace`,
      );
      return;
    }
  }
  t.log(
    `${count} seeds ok from ${start}; profiles ${JSON.stringify(Object.fromEntries(profiles))}; writes acked ${acked}`,
  );
  t.true(profiles.size >= 6, "the batch covers most fault profiles");
  t.true(acked > count, "writes were acknowledged");
}
