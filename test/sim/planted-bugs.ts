import type { RaftBugs } from "../../cluster/raft/core/index.js";
import { CI_PROFILES } from "./profiles.js";
import { runSeed } from "./simulator.js";

/** Every deliberately broken variant of the core (`RaftBugs`), each a one-line change in raft-node.ts. */
export const PLANTED_BUGS = [
  "commitOldTermEntries",
  "voteBeforePersist",
  "readWithoutQuorum",
  "learnersCountInQuorum",
  "concurrentConfChanges",
  "leaderAdoptsResponseTerm",
  "readIndexBeforeOwnTermCommit",
  "installStaleSnapshot",
  "heartbeatCommitBeyondMatch",
  "entriesWithoutSync",
] as const satisfies readonly (keyof RaftBugs)[];
export type PlantedBug = (typeof PLANTED_BUGS)[number];

/** Seeds of each CI profile that CI runs (seeds-<profile>.test.ts). */
export const CI_SEEDS_PER_PROFILE = 1000;

/**
 * Walks CI's seed batches (seed 1 of each CI profile, then seed 2, ...) with `bug` planted and returns the
 * first seed a checker rejects, or null if CI's whole batch passes the broken core.
 */
export async function firstCaughtByCi(
  bug: PlantedBug,
  seedsMax = CI_SEEDS_PER_PROFILE,
): Promise<{ seed: number; profile: string; checker: string; runs: number } | null> {
  let runs = 0;
  for (let seed = 1; seed <= seedsMax; seed++) {
    for (const profile of CI_PROFILES) {
      runs++;
      const r = await runSeed({ seed, profile, bugs: { [bug]: true } });
      if (!r.ok) return { seed, profile, checker: r.violation!.checker, runs };
    }
  }
  return null;
}
