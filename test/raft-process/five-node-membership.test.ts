import test from "ava";
import { ControlCluster, sleep, type ControlStatus } from "./control-cluster.js";

/** Polls `check` every 100 ms until it returns true; fails with `what` after `timeoutMs`. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

/** Writes `count` keys, five at a time, through the leader; records each acknowledged one. */
async function write(
  cluster: ControlCluster,
  acked: Map<string, string>,
  prefix: string,
  count: number,
): Promise<void> {
  for (let i = 0; i < count; i += 5) {
    await Promise.all(
      Array.from({ length: Math.min(5, count - i) }, async (_, j) => {
        const key = `${prefix}${i + j}`;
        const value = `${prefix}-value-${i + j}`;
        await cluster.onLeader("Propose", { op: "set", key, value }, 20_000);
        acked.set(key, value);
      }),
    );
  }
}

/**
 * A membership change through the leader. Retries while there is no leader or the core refuses (e.g. a
 * new leader has not committed in its term yet); done once `applied(status)` holds on the leader, so a
 * change whose answer was lost is not proposed twice.
 */
async function changeMembership(
  cluster: ControlCluster,
  method: string,
  req: object,
  applied: (s: ControlStatus) => boolean,
): Promise<void> {
  let lastError = "";
  await until(`${method} ${JSON.stringify(req)}`, 20_000, async () => {
    const leader = await cluster.waitLeader();
    if (applied(await cluster.node(leader).status())) return true;
    await cluster
      .node(leader)
      .call(method, req)
      .catch((e: Error) => void (lastError = e.message));
    return applied(await cluster.node(leader).status());
  }).catch((e: Error) => {
    throw new Error(`${e.message}; last error: ${lastError}`);
  });
}

test("5 processes: SIGKILL and restart of the leader, add a learner (caught up by snapshot), promote it, remove the leader", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  // A low snapshot threshold makes the log compact during the test, so restarts load a snapshot and the
  // learner is caught up by InstallSnapshot.
  await cluster.startVoters(5, ["--snapshot-entries", "20"]);
  const acked = new Map<string, string>();
  await write(cluster, acked, "a", 30);

  const leader1 = await cluster.waitLeader();
  await cluster.node(leader1).kill("SIGKILL");
  await write(cluster, acked, "b", 10);
  const leader2 = await cluster.waitLeader();
  t.not(leader2, leader1);
  await cluster.node(leader1).start();
  await until("restarted node catches up", 15_000, async () => {
    const [mine, lead] = await Promise.all([cluster.node(leader1).status(), cluster.node(leader2).status()]);
    return mine.applied >= lead.commit && mine.leader !== "";
  });
  const restarted = await cluster.node(leader1).status();
  t.true(restarted.snapshot_index > 0, "the restarted node's log was compacted into a snapshot");

  // Add node 6 as a learner: it starts with an empty configuration and is sent the leader's snapshot.
  const joiner = await cluster.startJoiner("6");
  await changeMembership(cluster, "AddLearner", { id: "6", address: joiner.address }, (s) =>
    s.learners.includes("6"),
  );
  await until("learner catches up", 15_000, async () => {
    const s = await joiner.status();
    const lead = await cluster.node(s.leader || "1").status();
    return s.learners.includes("6") && s.applied >= lead.commit;
  });
  const learnerStatus = await joiner.status();
  t.true(learnerStatus.snapshot_index > 0, "the learner holds a snapshot");
  t.regex(
    joiner.stderrTail.join("\n"),
    /installed snapshot at [1-9]/,
    "sent by the leader (InstallSnapshot)",
  );
  t.false(learnerStatus.voters.includes("6"));
  const local = await joiner.call<{ found: boolean; value: string }>("Read", {
    key: "a0",
    linearizable: false,
  });
  t.deepEqual({ found: local.found, value: local.value }, { found: true, value: "a-value-0" });

  await changeMembership(
    cluster,
    "Promote",
    { id: "6" },
    (s) => s.voters.includes("6") && !s.learners.includes("6"),
  );
  // The leader applied the promotion; node 6 applies it once it hears the new commit index.
  await until("node 6 applies its promotion", 15_000, async () =>
    (await joiner.status()).voters.includes("6"),
  );
  t.is((await joiner.status()).voters.length, 6);
  await write(cluster, acked, "c", 10);

  // Remove the current leader itself: the others elect a new one and go on committing.
  const leader3 = await cluster.waitLeader();
  await changeMembership(cluster, "RemoveVoter", { id: leader3 }, (s) => !s.voters.includes(leader3));
  const remaining = [...cluster.nodes.keys()].filter((id) => id !== leader3);
  const leader4 = await cluster.waitLeader(15_000, remaining);
  t.not(leader4, leader3);
  await cluster.node(leader3).kill("SIGTERM");
  t.is(cluster.node(leader3).exitStatus, 0, "SIGTERM stops a process cleanly");
  await write(cluster, acked, "d", 10);

  const s4 = await cluster.node(leader4).status();
  t.deepEqual([...s4.voters].sort(), remaining.sort());
  t.deepEqual(s4.learners, []);
  // Every acknowledged write, read linearizably through the promoted learner.
  for (const [key, value] of acked) {
    const r = await joiner.call<{ found: boolean; value: string }>("Read", { key, linearizable: true });
    t.is(r.found ? r.value : "<missing>", value, key);
  }
});
