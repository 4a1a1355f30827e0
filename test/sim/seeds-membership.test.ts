import test from "ava";
import { runSeedBatch } from "./seed-batch.js";

// CI runs 1,000 seeds of each of the four profiles (mixed, membership, chaos, storage), one file per
// profile so ava runs them in parallel; serial chunks of 250 keep results (and ava's timer) coming.
for (let start = 1; start <= 1000; start += 250) {
  test.serial(
    `simulator seeds ${start}-${start + 249} of the membership profile violate no checker`,
    async (t) => {
      t.timeout(600_000);
      await runSeedBatch(t, "membership", start, 250);
    },
  );
}
