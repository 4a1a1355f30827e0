import test from "ava";
import { CI_SEEDS_PER_PROFILE, firstCaughtByCi, PLANTED_BUGS } from "./planted-bugs.js";

/**
 * The simulator must find planted bugs: every deliberately broken one-line variant of the core
 * (`RaftBugs`, cluster/raft/core/types.ts) must fail a seed of the batches CI runs (seeds 1-1,000 of the
 * mixed, membership, chaos and storage profiles, walked seed by seed across the four). Each test stops at
 * the first seed a checker rejects and prints how to replay it.
 */
for (const bug of PLANTED_BUGS) {
  test(`planted bug ${bug} fails a seed of CI's batches (mixed, membership, chaos, storage)`, async (t) => {
    t.timeout(600_000);
    const hit = await firstCaughtByCi(bug);
    t.truthy(hit, `${bug}: all ${CI_SEEDS_PER_PROFILE} seeds of every CI profile pass the broken core`);
    t.log(
      `caught at ${hit?.profile} seed ${hit?.seed} by ${hit?.checker} after ${hit?.runs} runs: ` +
        `npm run sim -- --seed ${hit?.seed} --profile ${hit?.profile} --bug ${bug}`,
    );
  });
}
