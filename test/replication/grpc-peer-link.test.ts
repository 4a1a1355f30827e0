import test from "ava";
import { decodeReplicatedKey, encodeReplicatedKey } from "../../cluster/replication/index.js";
import { isLockboxError } from "../../src/errors.js";
import { GrpcReplicaCluster } from "./grpc-replication-cluster.js";

const IDS = ["a", "b", "c"];

async function until(cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

test("a Coordinator over GrpcPeerLink to 3 LevelDB replicas acknowledges once W = 2 synced: with c holding its batch, a and b hold the record on disk at the ack", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const k = c.newKey();
  c.hold("c");
  await c.peer("a").coordinator.write(k);
  for (const id of ["a", "b"]) {
    const bytes = await c.recordOn(id, k);
    t.truthy(bytes, `${id} synced the record before the write was acknowledged`);
    t.deepEqual(new Uint8Array(decodeReplicatedKey(bytes!).wrappedMaterial!), k.wrappedMaterial);
  }
  t.is(await c.recordOn("c", k), undefined, "c has not handled its batch yet");
  t.is(c.peer("b").service.counters.itemsReceived, 1, "b's copy came over gRPC");
  t.true(await until(() => c.peer("c").service.counters.itemsReceived === 1), "c's copy is on the wire");
  c.release("c");
  t.true(await until(async () => (await c.recordOn("c", k)) !== undefined), "and c syncs it once released");
});

test("a write fails UNAVAILABLE at its deadline when only 1 of 3 replicas answers over gRPC", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS, { writeDeadlineMs: 400 });
  c.hold("b");
  c.hold("c");
  const e = await t.throwsAsync(c.peer("a").coordinator.write(c.newKey()));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
});

test("a replica server shut down while holding batches fails them UNAVAILABLE at once (not at the deadline), the coordinator still gets W from the others, and the link reconnects when the server returns", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS, {
    link: { requestTimeoutMs: 60_000, reconnectMinMs: 50, reconnectMaxMs: 200 },
    batchTimeoutMs: 60_000,
  });
  const a = c.peer("a");
  c.hold("c");
  const k = c.newKey();
  // A direct send to c, pending on the held server.
  const direct = a.link.send("c", {
    from: "a",
    items: [
      { kind: "put", partition: c.placement.partitionOfKey(k.fields.id), record: encodeReplicatedKey(k) },
    ],
  });
  direct.catch(() => {});
  const write = a.coordinator.write(k);
  t.true(await until(() => c.peer("c").service.counters.itemsReceived >= 2), "c received both batches");
  const killedAt = Date.now();
  c.killServer("c");
  const e = await t.throwsAsync(direct);
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.true(Date.now() - killedAt < 5_000, "failed when the stream died, not at the 60 s deadline");
  await write; // W = 2 from a (local) and b
  t.truthy(await c.recordOn("b", k));
  t.true(a.link.counters.framesFailedUnavailable >= 1);
  // While c is down, a send fails at once rather than waiting.
  const startedDown = Date.now();
  const down = await t.throwsAsync(
    a.link.send("c", { from: "a", items: [{ kind: "digest", partition: 0 }] }),
  );
  t.true(isLockboxError(down, "UNAVAILABLE"), String(down));
  t.true(Date.now() - startedDown < 5_000);
  // c comes back on the same port: the link reopens its stream after the backoff.
  c.release("c");
  await c.restartServer("c");
  const k2 = c.newKey();
  const back = await until(async () => {
    try {
      const r = await a.link.send("c", {
        from: "a",
        items: [
          {
            kind: "put",
            partition: c.placement.partitionOfKey(k2.fields.id),
            record: encodeReplicatedKey(k2),
          },
        ],
      });
      return r.results[0]?.ok === true;
    } catch (err) {
      if (!isLockboxError(err, "UNAVAILABLE")) throw err;
      return false;
    }
  }, 10_000);
  t.true(back, "a reached c again");
  t.truthy(await c.recordOn("c", k2));
  t.true(a.link.counters.streamsOpened >= 2);
});

test("a send to a replica that never answers fails UNAVAILABLE at the link's deadline, and the late answer is dropped", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS, { link: { requestTimeoutMs: 1_000 } });
  const a = c.peer("a");
  // The stream is open first (a loaded machine's first TLS handshake may outlast the deadline).
  const warm = await until(async () => {
    try {
      return (await a.link.send("b", { from: "a", items: [{ kind: "digest", partition: 1 }] })).results[0]!
        .ok;
    } catch {
      return false;
    }
  });
  t.true(warm);
  const receivedBefore = c.peer("b").service.counters.framesReceived;
  c.hold("b");
  const started = Date.now();
  const e = await t.throwsAsync(a.link.send("b", { from: "a", items: [{ kind: "digest", partition: 1 }] }));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.true(Date.now() - started < 5_000);
  t.true(a.link.counters.framesTimedOut >= 1);
  t.is(
    c.peer("b").service.counters.framesReceived,
    receivedBefore + 1,
    "the frame reached b, which did not answer in time",
  );
  c.release("b");
  t.true(await until(() => a.link.counters.repliesInvalid >= 1), "the late answer matched nothing");
  const r = await a.link.send("b", { from: "a", items: [{ kind: "digest", partition: 1 }] });
  t.true(r.results[0]?.ok, "the stream still works");
});

test("many concurrent writes share few messages: 600 writes from a reach b and c in a handful of frames, each within the 64 KiB frame bound", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const a = c.peer("a");
  const keys = Array.from({ length: 600 }, () => c.newKey(`vol-${Math.floor(Math.random() * 1e9)}`));
  await Promise.all(keys.map((k) => a.coordinator.write(k)));
  const frames = a.link.counters.framesSent;
  const items = a.link.counters.itemsSent;
  t.log(`${items} items in ${frames} frames`);
  t.is(items, 1200, "every write went to b and c");
  t.true(frames <= 16, `${frames} frames for 1200 items`);
  t.is(c.peer("b").service.counters.framesReceived + c.peer("c").service.counters.framesReceived, frames);
  t.is(c.peer("b").service.counters.framesInvalid, 0);
  for (const k of keys.slice(0, 20)) for (const id of IDS) t.truthy(await c.recordOn(id, k));
});
