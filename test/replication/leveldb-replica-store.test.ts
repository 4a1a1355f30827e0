import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { openPeerStore } from "../../src/store/peer-store.js";

const v = (s: string) => new Uint8Array(Buffer.from(s));

test("records scan by partition in id order, hints and quarantine marks persist across a reopen", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-store-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let store = await openPeerStore(dir);
  let rs = new LevelReplicaStore(store, 10);
  await rs.write([
    { type: "put-record", partition: 3, id: "b", value: v("3b") },
    { type: "put-record", partition: 3, id: "a", value: v("3a") },
    { type: "put-record", partition: 700, id: "z", value: v("700z") },
    { type: "put-record", partition: 4, id: "c", value: v("4c") },
    { type: "put-hint", partition: 3, id: "a", owner: "peer/with/slashes", atMs: 1_700_000_000_123 },
    { type: "put-quarantine", partition: 700 },
  ]);
  await rs.write([{ type: "del-record", partition: 4, id: "c" }]);
  await store.close();
  store = await openPeerStore(dir);
  t.teardown(() => store.close());
  rs = new LevelReplicaStore(store, 10);
  t.deepEqual(
    (await rs.scanPartition(3, 10)).map((r) => [r.id, Buffer.from(r.value).toString()]),
    [
      ["a", "3a"],
      ["b", "3b"],
    ],
  );
  t.deepEqual((await rs.scanPartition(3, 1)).length, 1, "the limit bounds a scan");
  t.deepEqual(await rs.partitions(), [3, 700]);
  t.deepEqual(await rs.hints(10), [
    { partition: 3, id: "a", owner: "peer/with/slashes", atMs: 1_700_000_000_123 },
  ]);
  t.deepEqual(await rs.quarantined(), [700]);
  await rs.write([
    { type: "del-hint", partition: 3, id: "a", owner: "peer/with/slashes" },
    { type: "del-quarantine", partition: 700 },
  ]);
  t.deepEqual(await rs.hints(10), []);
  t.deepEqual(await rs.quarantined(), []);
});
