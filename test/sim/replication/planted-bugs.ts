import type { ReplicationBugs } from "../../../src/replication/replication-bugs.js";
import { runReplicationSeed } from "./replication-simulator.js";

/** Every deliberately broken variant of the replication code (`ReplicationBugs`). */
export const PLANTED_REPLICATION_BUGS = [
  "ackBeforeQuorum",
  "readTrustsOneReplica",
  "handoffDropEarly",
] as const satisfies readonly (keyof ReplicationBugs)[];
export type PlantedReplicationBug = (typeof PLANTED_REPLICATION_BUGS)[number];

/** Seeds CI runs on the correct code (seeds.test.ts); a planted bug must fail one of them. */
export const CI_SEEDS = 1000;

/** Walks CI's seeds with `bug` planted; the first seed a checker rejects, or null if none does. */
export async function firstSeedCatching(
  bug: PlantedReplicationBug,
  seedsMax = CI_SEEDS,
): Promise<{ seed: number; checker: string; detail: string } | null> {
  for (let seed = 1; seed <= seedsMax; seed++) {
    const r = await runReplicationSeed({ seed, bugs: { [bug]: true } });
    if (!r.ok) return { seed, checker: r.violation!.checker, detail: r.violation!.detail };
  }
  return null;
}
