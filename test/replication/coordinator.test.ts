import test from "ava";
import { nodeScheduler } from "../../cluster/raft/driver/scheduler.js";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { isLockboxError } from "../../src/errors.js";
import { Coordinator } from "../../src/replication/coordinator.js";
import type { ItemSender } from "../../src/replication/link-batcher.js";
import { deleted, TestCluster } from "./replication-cluster.js";

const PEERS = ["a", "b", "c", "d", "e"];

async function until(cond: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

test("a write is acknowledged once W = 2 of 3 primaries synced it, and those two hold it on disk at that moment", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  c.cut.add(p3!); // p3 is believed up but cannot be reached
  const coordinator = c.peer(p1!).coordinator;
  await coordinator.write(k);
  for (const p of [p1!, p2!]) {
    const bytes = await c.peer(p).replicaStore.getRecord(c.partitionOf(k), k.fields.id);
    t.truthy(bytes, `${p} synced the record before the write was acknowledged`);
    t.deepEqual(new Uint8Array(decodeReplicatedKey(bytes!).wrappedMaterial!), k.wrappedMaterial);
  }
  t.is(await c.peer(p3!).replicaStore.getRecord(c.partitionOf(k), k.fields.id), undefined);
  t.is(coordinator.metrics.writesAcked, 1);
});

test("a write fails UNAVAILABLE when fewer than W primaries can sync it", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  c.cut.add(p2!);
  c.cut.add(p3!);
  const e = await t.throwsAsync(c.peer(p1!).coordinator.write(k));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
});

test("a write whose primaries do not answer fails UNAVAILABLE at its deadline", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1] = c.primariesOf(k);
  // A sender whose batches to other peers never come back (a hung stream); local items still work.
  const peer = c.peer(p1!);
  const hung: ItemSender = {
    self: p1!,
    request: (to, item) => (to === p1 ? peer.batcher.request(to, item) : new Promise(() => {})),
  };
  const coordinator = new Coordinator({
    sender: hung,
    placement: c.placement,
    scheduler: nodeScheduler,
    writeDeadlineMs: 150,
  });
  const started = Date.now();
  const e = await t.throwsAsync(coordinator.write(k));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.true(Date.now() - started < 2_000, "the deadline, not a later timeout, ended the write");
});

test("a down primary's copy goes to the first live handoff peer with a hint naming it", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, , p3] = c.primariesOf(k);
  c.down.add(p3!);
  await c.peer(p1!).coordinator.write(k);
  const h = c.handoffsOf(k).find((x) => !c.down.has(x))!;
  const ok = await until(async () => (await c.peer(h).replicaStore.hints(10)).length > 0);
  t.true(ok, "the handoff peer stored a hint");
  t.deepEqual(
    (await c.peer(h).replicaStore.hints(10)).map(({ atMs: _, ...hint }) => hint),
    [{ partition: c.partitionOf(k), id: k.fields.id, owner: p3! }],
  );
  t.truthy(await c.peer(h).replicaStore.getRecord(c.partitionOf(k), k.fields.id), "and the copy itself");
});

test("a read merges R answers (a tombstone on two replicas wins) and repairs the stale third in the background", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  await until(
    async () => (await c.peer(p3!).replicaStore.getRecord(c.partitionOf(k), k.fields.id)) !== undefined,
  );
  const gone = encodeReplicatedKey(deleted(k, c.nowMs + 1));
  for (const p of [p1!, p2!]) t.true((await c.peer(p).replica.put(c.partitionOf(k), gone)).ok);
  const r = await c.peer(p3!).coordinator.read(k.fields.id);
  t.truthy(r?.tombstone, "the merge of any two answers holds the tombstone");
  t.is(r?.wrappedMaterial, null);
  const repaired = await until(async () => {
    const b = await c.peer(p3!).replicaStore.getRecord(c.partitionOf(k), k.fields.id);
    return b !== undefined && decodeReplicatedKey(b).tombstone !== null;
  });
  t.true(repaired, `${p3} was repaired by the read`);
});

test("a read answer carrying another key does not count (answers forged by a test sender)", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const other = c.newKey();
  const [p1, p2] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  const forgedBytes = encodeReplicatedKey(other);
  const real = c.peer(p1!).batcher;
  // p2's answers to gets are replaced by another key's record; everyone else answers truly.
  const forging: ItemSender = {
    self: p1!,
    request: async (to, item) =>
      to === p2 && item.kind === "get"
        ? { ok: true, kind: "get", record: forgedBytes }
        : real.request(to, item),
  };
  const coordinator = new Coordinator({ sender: forging, placement: c.placement, scheduler: nodeScheduler });
  const r = await coordinator.read(k.fields.id);
  t.is(r?.fields.id, k.fields.id);
  t.deepEqual(new Uint8Array(r!.wrappedMaterial!), k.wrappedMaterial);
  t.is(coordinator.metrics.badAnswers, 1);
});

test("a read whose answers hold the same bytes serves the local replica's checked record as it is: nothing decoded again, nothing merged", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  const real = c.peer(p1!).batcher;
  let localRecord: ReplicatedKey | undefined;
  const remoteBytes: Uint8Array[] = [];
  const watching: ItemSender = {
    self: p1!,
    request: async (to, item) => {
      const r = await real.request(to, item);
      if (r.ok && r.kind === "get" && to === p1) localRecord = r.decoded;
      else if (r.ok && r.kind === "get" && r.record !== null) remoteBytes.push(r.record);
      return r;
    },
  };
  const coordinator = new Coordinator({ sender: watching, placement: c.placement, scheduler: nodeScheduler });
  const r = await coordinator.read(k.fields.id);
  t.truthy(localRecord, "the local replica's answer carried its decoded record");
  t.is(remoteBytes.length, 1, "one remote answer, of bytes");
  t.deepEqual(new Uint8Array(remoteBytes[0]!), encodeReplicatedKey(k));
  t.is(r, localRecord ?? null, "the served record is the local one: the equal remote bytes were not decoded");
  t.deepEqual(r, decodeReplicatedKey(encodeReplicatedKey(k)));
  t.is(coordinator.metrics.badAnswers, 0);
});

test("a read fails UNAVAILABLE when fewer than R primaries answer", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  c.cut.add(p2!);
  c.cut.add(p3!);
  const e = await t.throwsAsync(c.peer(p1!).coordinator.read(k.fields.id));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
});

test("concurrent writes to one partition travel many records per message", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const keys = Array.from({ length: 60 }, () => c.newKey("vol-batch"));
  const [p1] = c.primariesOf(keys[0]!);
  const before = c.messages;
  await Promise.all(keys.map((k) => c.peer(p1!).coordinator.write(k)));
  const messages = c.messages - before;
  t.log(`${keys.length} writes to 2 remote primaries in ${messages} messages`);
  t.true(messages <= 10, `${messages} messages for ${keys.length * 2} remote copies`);
});

test("a read asks only R primaries, this peer first, and a third only when an asked one fails", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  await until(
    async () => (await c.peer(p3!).replicaStore.getRecord(c.partitionOf(k), k.fields.id)) !== undefined,
  );
  const real = c.peer(p1!).batcher;
  const asked: string[] = [];
  const counting: ItemSender = {
    self: p1!,
    request: (to, item) => {
      if (item.kind === "get") asked.push(to);
      return real.request(to, item);
    },
  };
  const coordinator = new Coordinator({ sender: counting, placement: c.placement, scheduler: nodeScheduler });
  const r = await coordinator.read(k.fields.id);
  t.deepEqual(new Uint8Array(r!.wrappedMaterial!), k.wrappedMaterial);
  t.is(asked.length, 2, "R = 2 primaries asked while both answer");
  t.is(asked[0], p1, "the coordinator's own replica first");
  c.cut.add(p2!); // p2 fails: whichever other primary a read asks first, it still answers
  for (let i = 0; i < 2; i++) {
    asked.length = 0;
    const again = await coordinator.read(k.fields.id);
    t.deepEqual(new Uint8Array(again!.wrappedMaterial!), k.wrappedMaterial);
    t.true(asked.length === 2 || (asked.length === 3 && asked.includes(p2!)), `asked ${asked.join(",")}`);
  }
  t.is(coordinator.metrics.readHedges, 0);
});

test("a read whose asked primary hangs asks the remaining one after readHedgeMs and answers", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k);
  await c.peer(p1!).coordinator.write(k);
  await until(
    async () => (await c.peer(p3!).replicaStore.getRecord(c.partitionOf(k), k.fields.id)) !== undefined,
  );
  const real = c.peer(p1!).batcher;
  // The other primaries never answer gets until the hedge; then only p2 stays hung. (A fresh
  // coordinator asks p1 itself and then p2, the first other primary in ring order.)
  const hung: ItemSender = {
    self: p1!,
    request: (to, item) =>
      to !== p1 && item.kind === "get" && (to === p2 || coordinator.metrics.readHedges === 0)
        ? new Promise(() => {})
        : real.request(to, item),
  };
  const coordinator = new Coordinator({
    sender: hung,
    placement: c.placement,
    scheduler: nodeScheduler,
    readHedgeMs: 100,
    readDeadlineMs: 5_000,
  });
  const started = Date.now();
  const r = await coordinator.read(k.fields.id);
  t.deepEqual(new Uint8Array(r!.wrappedMaterial!), k.wrappedMaterial);
  t.is(coordinator.metrics.readHedges, 1);
  t.true(Date.now() - started < 2_500, "answered after the hedge, well before the deadline");
});
