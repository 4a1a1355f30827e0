import test from "ava";
import { RECLAIM_AGE_MS, TestCluster } from "./replication-cluster.js";

const PEERS = ["a", "b", "c", "d", "e"];

test("a handoff copy goes home when its owner is back, and is dropped only after every primary holds it", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const p = c.partitionOf(k);
  const [p1, p2, p3] = c.primariesOf(k);
  c.down.add(p3!);
  c.cut.add(p3!);
  // p2 misses the write too (cut, believed up): the write reaches p1 only and fails, but its copies stay.
  c.cut.add(p2!);
  await t.throwsAsync(c.peer(p1!).coordinator.write(k));
  const holders = c.handoffsOf(k).filter((h) => !c.cut.has(h));
  const withHints: string[] = [];
  // The failed write's handoff copies are still landing; two are expected (for p2 and for p3).
  for (let i = 0; i < 100 && withHints.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 20));
    withHints.length = 0;
    for (const h of holders) if ((await c.peer(h).replicaStore.hints(10)).length > 0) withHints.push(h);
  }
  t.true(withHints.length > 0, "handoff peers hold hinted copies");
  const h = withHints[0]!;

  // The owner is back, but another primary (p2) is still cut: the copy must stay.
  c.down.delete(p3!);
  c.cut.delete(p3!);
  await c.peer(h).handoff.runOnce();
  t.true((await c.peer(h).replicaStore.hints(10)).length > 0, "kept while p2 does not hold the record");
  t.truthy(await c.peer(h).replicaStore.getRecord(p, k.fields.id));
  t.truthy(await c.peer(p3!).replicaStore.getRecord(p, k.fields.id), "the owner got its copy");

  c.cut.delete(p2!);
  for (const x of withHints) await c.peer(x).handoff.runOnce();
  for (const x of withHints) {
    t.deepEqual(await c.peer(x).replicaStore.hints(10), [], `${x} dropped its hints`);
    t.is(await c.peer(x).replicaStore.getRecord(p, k.fields.id), undefined, `${x} dropped its copy`);
  }
  for (const x of [p1!, p2!, p3!])
    t.truthy(await c.peer(x).replicaStore.getRecord(p, k.fields.id), `${x} holds it`);
});

test("a handoff copy not written for the hint max age is dropped undelivered (it could undo a reclaimed delete)", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey("vol-exp");
  const p = c.partitionOf(k);
  const [p1, p2, p3] = c.primariesOf(k);
  c.down.add(p3!);
  await c.peer(p1!).coordinator.write(k);
  const h = c.handoffsOf(k).find((x) => !c.down.has(x))!;
  for (let i = 0; i < 100 && (await c.peer(h).replicaStore.hints(10)).length === 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  t.is((await c.peer(h).replicaStore.hints(10)).length, 1);
  c.nowMs += RECLAIM_AGE_MS / 2 + 1; // the owner stayed away past the hint max age
  c.cut.add(p3!);
  await c.peer(h).handoff.runOnce();
  t.deepEqual(await c.peer(h).replicaStore.hints(10), []);
  t.is(await c.peer(h).replicaStore.getRecord(p, k.fields.id), undefined);
  t.is(c.peer(h).handoff.metrics.expired, 1);
  for (const x of [p1!, p2!])
    t.truthy(
      await c.peer(x).replicaStore.getRecord(p, k.fields.id),
      `${x} still holds the acknowledged write`,
    );
});
