import test from "ava";
import { ControlCluster, sleep, type ControlProcess } from "./control-cluster.js";

/**
 * Writes keys w{from}..w{to-1} one at a time through whichever node leads, and returns the ones that
 * were acknowledged. `during(i)` runs before write i (used to kill the leader mid-stream).
 */
async function writeKeys(
  cluster: ControlCluster,
  prefix: string,
  from: number,
  to: number,
  during?: (i: number) => Promise<void>,
): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  for (let i = from; i < to; i++) {
    await during?.(i);
    const key = `${prefix}${i}`;
    const value = `value-${i}`;
    // Retried through leader changes; a set is idempotent, so a duplicate apply is harmless.
    await cluster.onLeader("Propose", { op: "set", key, value }, 20_000);
    acked.set(key, value);
  }
  return acked;
}

/**
 * Reads every key linearizably on `node` (followers forward the ReadIndex to the leader), all at once,
 * retrying each read for up to 15 s while the node has no leader; returns the keys that read wrong.
 */
async function readAll(
  node: ControlProcess,
  cluster: ControlCluster,
  keys: Map<string, string>,
): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  const results = await Promise.all(
    [...keys].map(async ([key, value]) => {
      for (;;) {
        try {
          const res = await node.call<{ found: boolean; value: string }>("Read", { key, linearizable: true });
          return res.found && res.value === value
            ? ""
            : `${node.id}:${key}=${res.found ? res.value : "<missing>"}`;
        } catch (e) {
          if (Date.now() > deadline) {
            throw new Error(
              `node ${node.id}: no linearizable read of ${key} (${String(e)}): ${cluster.stderrOf(node.id)}`,
            );
          }
          await sleep(100);
        }
      }
    }),
  );
  return results.filter((r) => r !== "");
}

test("3 processes: elect a leader, replicate, survive SIGKILL of the leader and its restart, lose nothing acknowledged", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  await cluster.startVoters(3);

  const leader1 = await cluster.waitLeader();
  const s1 = await cluster.node(leader1).status();
  t.deepEqual([...s1.voters].sort(), ["1", "2", "3"]);

  // Replicate, then kill the leader with SIGKILL half way through a stream of writes.
  let killed = "";
  const acked = await writeKeys(cluster, "k", 0, 40, async (i) => {
    if (i !== 20) return;
    killed = await cluster.waitLeader();
    await cluster.node(killed).kill("SIGKILL");
  });
  t.is(acked.size, 40);
  t.not(killed, "");

  const leader2 = await cluster.waitLeader();
  t.not(leader2, killed, "a surviving node took over");
  const s2 = await cluster.node(leader2).status();
  t.true(s2.term > s1.term, "the new leader has a newer term");

  // The killed leader restarts from its LevelDB and catches up.
  await cluster.node(killed).start();
  const more = await writeKeys(cluster, "m", 0, 10);
  for (const [k, v] of more) acked.set(k, v);
  t.deepEqual(
    await readAll(cluster.node(killed), cluster, acked),
    [],
    "restarted node reads every acknowledged write",
  );
  for (const n of cluster.running()) {
    if (n.id !== killed)
      t.deepEqual(await readAll(n, cluster, acked), [], `node ${n.id} reads every acknowledged write`);
  }

  // A SIGKILL of every process at once: each acknowledged write was fsync'd on a majority.
  await cluster.killAll("SIGKILL");
  await Promise.all([...cluster.nodes.values()].map((n) => n.start()));
  await cluster.waitLeader();
  t.deepEqual(
    await readAll(cluster.node("2"), cluster, acked),
    [],
    "after a whole-cluster SIGKILL nothing acknowledged is lost",
  );
  const applied = await Promise.all(
    [...cluster.nodes.values()].map((n) => n.status().then((s) => s.applied)),
  );
  for (const a of applied) t.true(a >= acked.size, "every node re-applied the log from its own storage");

  // SIGTERM stops a process cleanly even while its peers keep their raft streams to it open.
  await cluster.node("3").kill("SIGTERM");
  t.is(cluster.node("3").exitStatus, 0);
});
