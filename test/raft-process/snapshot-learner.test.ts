import test from "ava";
import { randomBytes } from "node:crypto";
import { ControlCluster, sleep } from "./control-cluster.js";

const KEYS = 480;
const VALUE_CHARS = 12 * 1024; // the test state machine's largest value: 480 of them make ~5.9 MB

test("3 processes: a new learner is caught up by a snapshot of several MB that crosses the real gRPC transport in chunks, and restores it", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  // The log is compacted every 100 entries, so the learner (added after all the writes) can only be
  // caught up by InstallSnapshot of the whole state.
  await cluster.startVoters(3, ["--snapshot-entries", "100"]);
  const values = new Map<string, string>();
  for (let i = 0; i < KEYS; i += 16) {
    await Promise.all(
      Array.from({ length: Math.min(16, KEYS - i) }, async (_, j) => {
        const key = `k${i + j}`;
        const value = randomBytes(VALUE_CHARS / 2).toString("hex");
        await cluster.onLeader("Propose", { op: "set", key, value }, 30_000);
        values.set(key, value);
      }),
    );
  }
  const leader = await cluster.waitLeader();
  const before = await cluster.node(leader).status();
  t.true(before.snapshot_index > 0, "the leader's log was compacted");

  const learner = await cluster.startJoiner("4");
  await cluster.onLeader("AddLearner", { id: "4", address: learner.address }, 30_000);
  const deadline = Date.now() + 60_000;
  let s = await learner.status();
  while (s.applied < before.commit && Date.now() < deadline) {
    await sleep(100);
    s = await learner.status();
  }
  t.true(s.applied >= before.commit, `learner applied ${s.applied} of ${before.commit}`);
  t.true(s.snapshot_index >= before.snapshot_index, "caught up by the leader's snapshot");
  t.deepEqual(s.learners, ["4"]);

  // The image crossed in chunks of at most 32 KiB, and nothing was refused. The snapshot at index i
  // holds the values of all but a few of the first i entries (the rest are leader and membership
  // entries), so it is at least (i - 10) values long.
  t.true(before.snapshot_index >= 300, "a snapshot of several MB");
  const minChunks = Math.floor(((before.snapshot_index - 10) * VALUE_CHARS) / (32 * 1024));
  t.true(s.transport.snapshotsReceived >= 1);
  t.true(
    s.transport.snapshotChunksReceived >= minChunks,
    `${s.transport.snapshotChunksReceived} chunks received, at least ${minChunks} expected`,
  );
  t.deepEqual(s.transport.snapshotsRefused, {});
  const sender = await cluster.node(leader).status();
  t.true(sender.transport.snapshotChunksSent >= minChunks);

  // The learner restored the state: every value, read from its own applied state.
  for (const key of ["k0", `k${KEYS >> 1}`, `k${KEYS - 1}`]) {
    const r = await learner.call<{ found: boolean; value: string }>("Read", { key, linearizable: false });
    t.true(r.found, key);
    t.true(r.value === values.get(key), `${key} has the value written`);
  }
});
