import test from "ava";
import { CI_SEEDS, firstSeedCatching, PLANTED_REPLICATION_BUGS } from "./planted-bugs.js";

/**
 * The replication simulator must find planted bugs: every deliberately broken variant of the
 * replication code (`ReplicationBugs`, src/replication/replication-bugs.ts) must fail one of the seeds
 * CI runs, and within the first SEEDS_BOUND of them. Each test stops at the first failing seed and
 * prints how to replay it.
 */
const SEEDS_BOUND = 100;

for (const bug of PLANTED_REPLICATION_BUGS) {
  test(`planted replication bug ${bug} fails a seed within the first ${SEEDS_BOUND} of CI's ${CI_SEEDS}`, async (t) => {
    t.timeout(600_000);
    const hit = await firstSeedCatching(bug, SEEDS_BOUND);
    t.truthy(hit, `${bug}: the first ${SEEDS_BOUND} seeds pass the broken code`);
    t.log(
      `caught at seed ${hit?.seed} by ${hit?.checker}: npm run sim:replication -- --seed ${hit?.seed} --bug ${bug} --trace`,
    );
  });
}
