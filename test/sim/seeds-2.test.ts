import test from "ava";
import { runSeedBatch } from "./seed-batch.js";

// One of four CI batches (1,000 seeds in all, split so ava runs them in parallel).
test("simulator seeds 251-500 (mixed fault profiles) violate no checker", (t) => {
  runSeedBatch(t, 251, 250);
});
