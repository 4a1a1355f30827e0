import test from "ava";
import { runReplicationSeedBatch } from "./seed-batch.js";

// CI runs replication seeds 1-1,000 in four files of 250 so ava runs them in parallel; this is 251-500.
test("replication simulator seeds 251-500 violate no checker", async (t) => {
  t.timeout(600_000);
  await runReplicationSeedBatch(t, 251, 250);
});
