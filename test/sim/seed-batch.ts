import type { ExecutionContext } from "ava";
import { runSeed } from "./simulator.js";

/**
 * Runs seeds [start, start + count) of `profile` on the correct core and fails the test on the first
 * violation (an inconclusive linearizability search is one), naming the seed, the checker and how to
 * replay it.
 */
export async function runSeedBatch(
  t: ExecutionContext,
  profile: string,
  start: number,
  count: number,
): Promise<void> {
  const profiles = new Map<string, number>();
  let acked = 0;
  let crashes = 0;
  for (let seed = start; seed < start + count; seed++) {
    const r = await runSeed({ seed, profile });
    profiles.set(r.profile, (profiles.get(r.profile) ?? 0) + 1);
    acked += r.stats.writesAcked;
    crashes += r.stats.crashes;
    if (!r.ok) {
      t.fail(
        `seed ${seed} [${r.profile}] violated ${r.violation!.checker}: ${r.violation!.detail}\nreplay: npm run sim -- --seed ${seed} --profile ${profile} --trace`,
      );
      return;
    }
  }
  t.log(
    `${count} ${profile} seeds ok from ${start}; profiles ${JSON.stringify(Object.fromEntries(profiles))}; writes acked ${acked}; crashes ${crashes}`,
  );
  if (profile === "mixed") t.true(profiles.size >= 6, "the batch covers most fault profiles");
  t.true(acked > count, "writes were acknowledged");
}
